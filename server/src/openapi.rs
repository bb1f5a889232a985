//! The OpenAPI 3.1 document of `/v1`, generated from the handlers' annotations and the
//! wire types (utoipa), served at `GET /v1/openapi.json`. It describes every route but the
//! console's pages and itself: `/v1`, `/healthz`, `/readyz` and `/metrics`.

use crate::routes::{self, access, registry, runs, secrets};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "Runs and write-only credential management. The acting principal is the bearer token's; no endpoint returns a secret value."
    ),
    paths(
        access::whoami,
        access::public_key,
        secrets::list,
        secrets::put,
        secrets::describe,
        secrets::delete,
        secrets::rotate,
        access::create_token,
        access::list_tokens,
        access::revoke_token,
        access::remove_member,
        access::audit,
        runs::start,
        runs::list,
        runs::get,
        runs::audit,
        registry::list_workflows,
        registry::register_workflow,
        registry::check,
        registry::list_components,
        registry::register_component,
        registry::script_policy,
        registry::set_script_policy,
        routes::healthz,
        routes::readyz,
        routes::metrics,
    ),
    modifiers(&Bearer)
)]
struct ApiDoc;

/// Declares the `bearer` scheme the paths refer to.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("lk_…")
                    .build(),
            ),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /v1/openapi.json`. Public, like the code it describes.
pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}
