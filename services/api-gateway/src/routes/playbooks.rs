//! `GET /api/v1/provisioning/playbooks`: the allow-list of playbooks a run may name, each with its
//! description and content hash, and whether ansible-playbook is installed (and how to install it).

use actix_web::{HttpResponse, web};
use sentinel_ansible::{Installation, PlaybookRegistry};
use sentinel_jobs::Spine;
use sentinel_jobs::domain::Role;
use serde::Serialize;

use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/provisioning/playbooks").route(web::get().to(list)));
}

/// One playbook a run may name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlaybookView {
    /// What a run names (`^[a-z0-9_-]+$`).
    pub name: String,
    /// The playbook's own leading comment.
    pub description: String,
    /// SHA-256 of the file (hex): what a run records and what `apply` compares.
    pub content_hash: String,
}

/// Whether this gateway finds ansible-playbook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnsibleView {
    pub found: bool,
    pub path: Option<String>,
    /// How to install it, when it is missing.
    pub message: Option<String>,
}

/// The allow-list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlaybookList {
    pub items: Vec<PlaybookView>,
    /// The allow-listed directories (`provision.playbook_dirs`).
    pub directories: Vec<String>,
    pub ansible: AnsibleView,
}

#[utoipa::path(
    get,
    path = "/api/v1/provisioning/playbooks",
    tag = "provisioning",
    summary = "The playbooks a run may name (the allow-list), with descriptions and content hashes",
    responses((status = 200, description = "The allow-list", body = PlaybookList), doc::Guarded)
)]
pub(crate) async fn list(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let settings = &spine.settings().provision;
    let registry = PlaybookRegistry::new(settings.playbook_dirs.clone());
    let items = registry
        .list()
        .map_err(|e| Problem::unavailable(e.to_string()))?
        .into_iter()
        .map(|p| PlaybookView { name: p.name.to_string(), description: p.description, content_hash: p.hash })
        .collect();
    let install = Installation::from_settings(settings);
    let ansible = AnsibleView {
        found: install.ansible_playbook.is_some(),
        path: install.ansible_playbook.as_ref().map(|p| p.display().to_string()),
        message: install.ansible_playbook.is_none().then(|| install.missing_message()),
    };
    let directories = registry.dirs().iter().map(|d| d.display().to_string()).collect();
    Ok(HttpResponse::Ok().json(PlaybookList { items, directories, ansible }))
}
