//! The `ModelAdmin` service: reloads the model, behind an optional bearer token.

use super::pb::{self, model_admin_server::ModelAdmin};
use super::state::ServerState;
use super::status::ApiError;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The service.
#[derive(Debug, Clone)]
pub struct AdminService {
    state: Arc<ServerState>,
}

impl AdminService {
    /// A service over shared state.
    pub fn new(state: Arc<ServerState>) -> AdminService {
        AdminService { state }
    }
}

#[tonic::async_trait]
impl ModelAdmin for AdminService {
    async fn reload_model(
        &self,
        request: Request<pb::ReloadModelRequest>,
    ) -> Result<Response<pb::ReloadModelResponse>, Status> {
        let req = request.into_inner();
        let path = self.state.resolve_bundle_path(&req.bundle_path)?;
        let outcome = self.state.reload(path).await?;
        Ok(Response::new(pb::ReloadModelResponse {
            previous_model_version: outcome.previous_version,
            model_version: outcome.version,
            bundle_path: outcome.bundle_path.display().to_string(),
            load_millis: outcome.load_time.as_millis() as u64,
        }))
    }
}

/// An interceptor requiring `authorization: Bearer <token>` (compared in constant time).
#[derive(Clone)]
pub struct BearerAuth {
    expected: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("required", &self.expected.is_some())
            .finish()
    }
}

impl BearerAuth {
    /// Requires `token` when given; lets everything through otherwise.
    pub fn new(token: Option<&str>) -> BearerAuth {
        BearerAuth {
            expected: token.map(|t| Arc::from(format!("Bearer {t}").into_bytes())),
        }
    }

    /// Checks a request's metadata.
    pub fn check(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), ApiError> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let Some(given) = metadata.get("authorization") else {
            return Err(ApiError::Unauthenticated(
                "ModelAdmin requires an authorization: Bearer <token> header",
            ));
        };
        if constant_time_eq(given.as_bytes(), expected) {
            Ok(())
        } else {
            Err(ApiError::Unauthenticated("the admin token is wrong"))
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request.metadata())?;
        Ok(request)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_is_checked() {
        let auth = BearerAuth::new(Some("s3cret"));
        let mut m = tonic::metadata::MetadataMap::new();
        assert!(matches!(auth.check(&m), Err(ApiError::Unauthenticated(_))));
        m.insert("authorization", "Bearer wrong!".parse().unwrap());
        assert!(auth.check(&m).is_err());
        m.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(auth.check(&m).is_ok());
        assert!(BearerAuth::new(None)
            .check(&tonic::metadata::MetadataMap::new())
            .is_ok());
    }
}
