"""Drives a server with a client openapi-python-client generated from its OpenAPI document
(server_api::a_client_generated_from_the_document_is_typed_and_works): it uploads a component
(application/wasm) and a manifest (application/toml), runs the workflow, lists secrets,
tokens, runs and audit records, checks the workflow, and reads /healthz, /readyz and /metrics. Every answer must
parse into the generated models with their fields typed: nothing may land in
`additional_properties`, which is where an untyped schema sends it. Prints what it read as JSON for the test to compare with the server's own answers.

Arguments: the client package's parent directory, the server's URL, an admin token, the
component's path, the workflow's name and its manifest's path.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])
base_url, token, wasm_path, workflow, manifest_path = sys.argv[2:7]

from latchkey_client import AuthenticatedClient  # noqa: E402
from latchkey_client import models  # noqa: E402
from latchkey_client.api.access import list_tokens, query_audit  # noqa: E402
from latchkey_client.api.health import healthz, metrics, readyz  # noqa: E402
from latchkey_client.api.registry import (  # noqa: E402
    check_workflow,
    register_component,
    register_workflow,
)
from latchkey_client.api.runs import list_runs, start_run  # noqa: E402
from latchkey_client.api.secrets import list_secrets  # noqa: E402
from latchkey_client.types import File  # noqa: E402


def typed(obj, model):
    """`obj` is an instance of the generated `model` and nothing in it went untyped."""
    assert isinstance(obj, model), f"{type(obj).__name__} is not {model.__name__}: {obj!r}"
    extra = getattr(obj, "additional_properties", {})
    assert extra == {}, f"{model.__name__} left fields untyped: {extra!r}"
    return obj


client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

# The operational endpoints are in the document too.
for probe in (healthz, readyz, metrics):
    answer = probe.sync_detailed(client=client)
    assert answer.status_code == 200, (probe.__name__, answer)
assert b"latchkey_build_info" in metrics.sync_detailed(client=client).content

with open(wasm_path, "rb") as f:
    component = register_component.sync(
        client=client, body=File(payload=f.read(), mime_type="application/wasm"), name="probe"
    )
typed(component, models.ComponentView)
assert component.name == "probe" and component.digest.startswith("sha256:"), component

with open(manifest_path, "rb") as f:
    registered = register_workflow.sync(workflow, client=client, body=File(payload=f.read()))
typed(registered, models.WorkflowView)
assert registered.name == workflow and registered.steps[0].component == component.digest

check = typed(check_workflow.sync(workflow, client=client), models.CheckView)
key = typed(check.steps[0].keys[0], models.CheckKeyView)
resolution = key.resolution.to_dict()
assert list(resolution) == ["Ok"] and "tier workspace" in resolution["Ok"], resolution
assert type(key.resolution).__name__.startswith("KeyResolution"), key.resolution
typed(key.resolution, type(key.resolution))

run = start_run.sync(
    client=client,
    body=models.StartRun(
        workflow=workflow,
        wait=True,
        input_=models.StartRunInput.from_dict({"action": "get", "key": "K"}),
    ),
)
typed(run, models.RunView)
assert run.status == models.RunStatus.SUCCEEDED, run

secrets = list_secrets.sync(client=client)
assert secrets, "no secrets listed"
secret = typed(secrets[0], models.SecretView)
typed(secret.binding, models.Binding)

tokens = list_tokens.sync(client=client)
for t in tokens:
    typed(t, models.TokenMeta)

runs = list_runs.sync(client=client)
for r in runs:
    typed(r, models.RunView)
    for s in r.steps:
        typed(s, models.StepView)
        for c in s.credentials:
            typed(c, models.CredentialView)

audit = typed(query_audit.sync(client=client), models.AuditRecords)
for a in audit.records:
    typed(a, models.AuditRecord)

print(
    json.dumps(
        {
            "secret": {
                "key": secret.key,
                "scope": secret.scope,
                "version": secret.version,
                "created_by": secret.created_by,
                "hosts": secret.binding.hosts,
                "locations": secret.binding.locations,
                "last_run": secret.last_used.run_id if secret.last_used else None,
            },
            "tokens": [{"name": t.name, "role": t.role.value} for t in tokens],
            "runs": [
                {
                    "id": r.id,
                    "status": r.status.value,
                    "steps": [s.name for s in r.steps],
                    "credentials": [c.key for s in r.steps for c in s.credentials],
                }
                for r in runs
            ],
            "events": [a.event.value for a in audit.records],
        }
    )
)
