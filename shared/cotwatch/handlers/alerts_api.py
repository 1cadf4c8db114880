"""The ``alerts_api`` Lambda handler: an API Gateway HTTP API (payload v2) in front of the alerts table and
the alert topic, on powertools' ``APIGatewayHttpResolver`` (request validation and OpenAPI from the routes).

``functions/alerts_api/app.py`` builds it from settings; the local rig serves the same handler on loopback.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from cotwatch import observability as obs
from cotwatch.alerts import AlertNotFoundError, InvalidTransitionError, Verdict
from cotwatch.alerts_api import (
    ALERT_ID,
    DEFAULT_TENANT_CLAIM,
    AlertFilter,
    ApiError,
    Caller,
    SubscriptionRequest,
    caller_from_event,
)
from cotwatch.contract import alert_document
from cotwatch.ports import AlertStore

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


class AlertQuery(Protocol):
    def list(self, caller: Caller, wanted: AlertFilter, cursor: str | None) -> dict[str, Any]: ...


class Subscriptions(Protocol):
    def create(self, caller: Caller, request: SubscriptionRequest) -> dict[str, Any]: ...

    def list(self, caller: Caller) -> list[dict[str, Any]]: ...

    def delete(self, caller: Caller, subscription_id: str) -> None: ...


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    note: str | None = Field(default=None, max_length=2000)


def _error(status: int, message: str) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"message": message})


def build_app(
    alerts: AlertStore, query: AlertQuery, subscriptions: Subscriptions, tenant_claim: str = DEFAULT_TENANT_CLAIM
) -> APIGatewayHttpResolver:
    # SigV4 callers come in under /iam (a route with the IAM authorizer); the routes are the same.
    app = APIGatewayHttpResolver(enable_validation=True, strip_prefixes=["/iam"])

    def caller() -> Caller:
        return caller_from_event(app.current_event.raw_event, tenant_claim)

    def visible_alert(alert_id: str, who: Caller) -> dict[str, Any]:
        """The alert, if the caller may see it; another tenant's is answered as missing."""
        if not ALERT_ID.match(alert_id):
            raise ApiError(400, "an alert id is 32 lowercase hex characters")
        item = alerts.get(alert_id)
        if item is None or not who.allows(str(item["tenant"])):
            raise ApiError(404, f"no alert {alert_id!r}")
        return item

    def api_error(exc: ApiError) -> Response[Any]:
        return _error(exc.status, exc.message)

    def not_found(exc: AlertNotFoundError) -> Response[Any]:
        return _error(404, str(exc))

    def conflict(exc: InvalidTransitionError) -> Response[Any]:
        return _error(409, str(exc))

    # Registered by call, not as decorators: powertools' decorator is untyped.
    app.exception_handler(ApiError)(api_error)
    app.exception_handler(AlertNotFoundError)(not_found)
    app.exception_handler(InvalidTransitionError)(conflict)

    @app.get("/alerts", summary="List alerts, newest first, through the table's indexes")
    def list_alerts(
        tenant: Annotated[str | None, Query()] = None,
        category: Annotated[str | None, Query()] = None,
        model: Annotated[str | None, Query()] = None,
        status: Annotated[Literal["open", "acknowledged", "resolved"] | None, Query()] = None,
        min_severity: Annotated[int | None, Query(ge=1, le=4)] = None,
        since: Annotated[datetime | None, Query()] = None,
        until: Annotated[datetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> dict[str, Any]:
        wanted = AlertFilter(
            tenant=tenant, category=category, model=model, status=status, min_severity=min_severity,
            since=since, until=until, limit=limit,
        )  # fmt: skip
        return query.list(caller(), wanted, cursor)

    @app.get("/alerts/<alert_id>", summary="One alert with its evidence and audit trail")
    def get_alert(alert_id: Annotated[str, Path()]) -> dict[str, Any]:
        return alert_document(visible_alert(alert_id, caller()))

    @app.post("/alerts/<alert_id>/ack", summary="Acknowledge an open alert")
    def acknowledge(
        alert_id: Annotated[str, Path()], body: Annotated[AckRequest | None, Body()] = None
    ) -> dict[str, Any]:
        who = caller()
        visible_alert(alert_id, who)
        return alert_document(alerts.acknowledge(alert_id, who=who.who, note=body.note if body else None))

    @app.post("/alerts/<alert_id>/resolve", summary="Resolve an alert with a verdict")
    def resolve(alert_id: Annotated[str, Path()], body: Annotated[ResolveRequest, Body()]) -> dict[str, Any]:
        who = caller()
        visible_alert(alert_id, who)
        return alert_document(alerts.resolve(alert_id, body.verdict, who=who.who, note=body.note))

    @app.post("/subscriptions", summary="Subscribe an endpoint to alerts matching a filter")
    def create_subscription(body: Annotated[SubscriptionRequest, Body()]) -> Response[Any]:
        created = subscriptions.create(caller(), body)
        return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created)

    @app.get("/subscriptions", summary="The subscriptions within the caller's tenant scope")
    def list_subscriptions() -> dict[str, Any]:
        return {"subscriptions": subscriptions.list(caller())}

    @app.delete("/subscriptions/<subscription_id>", summary="Delete a subscription")
    def delete_subscription(subscription_id: Annotated[str, Path(max_length=128)]) -> Response[Any]:
        subscriptions.delete(caller(), subscription_id)
        return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body=None)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        schema: dict[str, Any] = app.get_openapi_schema(title="cotwatch alerts API", version="1").model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        return schema

    return app


def make_handler(
    alerts: AlertStore,
    query: AlertQuery,
    subscriptions: Subscriptions,
    tenant_claim: str = DEFAULT_TENANT_CLAIM,
    *,
    logger: Logger | None = None,
) -> Handler:
    logger = logger or Logger(service=obs.SERVICE)
    app = build_app(alerts, query, subscriptions, tenant_claim)

    @logger.inject_lambda_context
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        response: dict[str, Any] = app.resolve(event, context)
        return response

    handler: Handler = lambda_handler
    return handler
