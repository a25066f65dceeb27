//! The Azure Blob backend: an object_store `MicrosoftAzure` with a shared account key, against
//! Azure itself or an emulator (Azurite) at a path-style endpoint.

use std::sync::Arc;

use base64::Engine as _;
use object_store::azure::MicrosoftAzureBuilder;
use secrecy::ExposeSecret;

use crate::cloud::{Store, client_options, retry_config};
use crate::error::Redactor;
use crate::spec::{
    join, normalize_prefix, require_secret, validate_azure_account, validate_azure_container, validate_endpoint,
};
use crate::{DestinationSpec, StorageError};

/// Block blobs take blocks of any size; 1 MiB keeps the block count (≤ 50,000) far off for any
/// sensible part size while avoiding per-request overhead on tiny parts.
pub(crate) const MIN_PART: usize = 1024 * 1024;
/// Azure's largest block (4,000 MiB).
pub(crate) const MAX_PART: usize = 4000 * 1024 * 1024;
/// A block blob holds at most 50,000 committed blocks.
const MAX_BLOCKS: u64 = 50_000;

#[derive(Clone)]
pub(crate) struct AzureBackend {
    pub(crate) store: Store,
    account: String,
    container: String,
}

impl AzureBackend {
    pub(crate) fn open(spec: &DestinationSpec) -> Result<Self, StorageError> {
        let DestinationSpec::Azure { account, container, prefix, access_key, endpoint } = spec else {
            return Err(StorageError::invalid("kind", "not an Azure destination"));
        };
        validate_azure_account(account)?;
        validate_azure_container(container)?;
        let prefix = normalize_prefix(prefix)?;
        require_secret("access_key", access_key)?;
        if base64::engine::general_purpose::STANDARD.decode(access_key.expose_secret().trim()).is_err() {
            return Err(StorageError::invalid("access_key", "is not base64 (Azure account keys are)"));
        }
        let redact = Redactor::new([access_key.expose_secret().to_owned()]);

        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(account)
            .with_container_name(container)
            .with_access_key(access_key.expose_secret().trim())
            .with_retry(retry_config());
        let (allow_http, shown) = match endpoint {
            None => (false, format!("Azure container `{container}` in account `{account}`")),
            Some(e) => {
                let mut url = validate_endpoint(e)?;
                // Emulators and Azure Stack address accounts by path (`http://127.0.0.1:10000/acct`);
                // accept the bare host:port and add the account, as Azure's own tools do.
                let local_host = url.host_str().is_some_and(|h| {
                    h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok()
                });
                if local_host && (url.path().is_empty() || url.path() == "/") {
                    url.set_path(account);
                }
                let base = url.as_str().trim_end_matches('/').to_owned();
                builder = builder.with_endpoint(base.clone());
                (url.scheme() == "http", format!("Azure container `{container}` at {base}"))
            }
        };
        let azure = builder
            .with_client_options(client_options(allow_http))
            .build()
            .map_err(|e| StorageError::invalid("azure", redact.clean(&e.to_string())))?;
        Ok(Self {
            store: Store { store: Arc::new(azure), prefix, what: shown, redact, max_parts: MAX_BLOCKS },
            account: account.clone(),
            container: container.clone(),
        })
    }

    pub(crate) fn location(&self, key: &str) -> String {
        format!("azure://{}/{}/{}", self.account, self.container, join(&self.store.prefix, key))
    }
}
