//! `backup.test_target` and `backup.test_destination`: a target is connected to (server version,
//! the dump tool found and its version, pg_dump's client-not-older rule); a destination gets a
//! probe object written, read back, compared and deleted.

use std::time::Duration;

use async_trait::async_trait;
use sentinel_jobs::{JobContext, JobError, JobHandler};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{engines, setup};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetPayload {
    target_id: Uuid,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationPayload {
    destination_id: Uuid,
}

pub struct TestTarget;

#[async_trait]
impl JobHandler for TestTarget {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let p: TargetPayload = ctx.payload()?;
        let spine = ctx.spine();
        let org = ctx.job().org_id.ok_or_else(|| JobError::Permanent("a test belongs to an organization".into()))?;
        let target = spine
            .db()
            .backups()
            .target(org, p.target_id)
            .await?
            .ok_or_else(|| JobError::Permanent(format!("backup target {} does not exist", p.target_id)))?;
        if target.engine.is_file() {
            let path = std::path::PathBuf::from(target.path.clone().unwrap_or_default());
            if !path.is_file() {
                return Err(JobError::Permanent(format!("{}: no such file on the backup worker", path.display())));
            }
            let version = sentinel_jobs::db::sqlite_files::query_texts(&path, "SELECT sqlite_version()", false)
                .await
                .map_err(|e| JobError::Permanent(format!("{}: {e}", path.display())))?;
            return Ok(json!({
                "engine": target.engine,
                "server_version": version.first().cloned().unwrap_or_default(),
                "tool": null,
                "tool_version": null,
                "size_bytes": std::fs::metadata(&path).ok().map(|m| m.len()),
            }));
        }
        let tools = setup::tools(spine);
        let work = setup::work_dir(spine, ctx.job().id.as_uuid())?;
        let mut databases = Vec::new();
        let mut server_version = String::new();
        for database in setup::databases(&target) {
            let conn = setup::connection(spine, &target, &database).await?;
            let inv =
                engines::server_version(&conn, &tools, work.path()).map_err(|e| JobError::Permanent(e.to_string()))?;
            let answer = engines::capture(&inv, Duration::from_secs(30))
                .await
                .map_err(|e| JobError::Permanent(format!("cannot connect to {database:?}: {e}")))?;
            server_version = answer.lines().last().unwrap_or_default().trim().to_owned();
            databases.push(database);
        }
        let conn = setup::connection(spine, &target, databases.first().map(String::as_str).unwrap_or("")).await?;
        let tool = engines::tool_version(&conn, &tools).map_err(|e| JobError::Permanent(e.to_string()))?;
        let tool_version = engines::capture(&tool, Duration::from_secs(30)).await.map_err(JobError::Permanent)?;
        engines::check_client_not_older(target.engine, &tool_version, &server_version).map_err(JobError::Permanent)?;
        Ok(json!({
            "engine": target.engine,
            "server_version": server_version,
            "tool": tool.program.display().to_string(),
            "tool_version": tool_version,
            "databases": databases,
        }))
    }
}

pub struct TestDestination;

#[async_trait]
impl JobHandler for TestDestination {
    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let p: DestinationPayload = ctx.payload()?;
        let spine = ctx.spine();
        let org = ctx.job().org_id.ok_or_else(|| JobError::Permanent("a test belongs to an organization".into()))?;
        let dest =
            spine.db().backups().destination(org, p.destination_id).await?.ok_or_else(|| {
                JobError::Permanent(format!("backup destination {} does not exist", p.destination_id))
            })?;
        let storage = setup::destination(spine, &dest).await?;
        let report =
            storage.probe().await.map_err(|e| JobError::Permanent(format!("{}: {e}", storage.location(""))))?;
        Ok(json!({
            "location": storage.location(""),
            "write_ms": report.write_ms,
            "read_ms": report.read_ms,
            "delete_ms": report.delete_ms,
        }))
    }
}
