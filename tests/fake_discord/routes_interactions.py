"""REST routes driven by interaction tokens: the callback, the @original response and followup webhooks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from .errors import (ALREADY_ACKNOWLEDGED, INVALID_FORM_BODY, INVALID_WEBHOOK_TOKEN, UNKNOWN_INTERACTION,
                     UNKNOWN_MESSAGE, UNKNOWN_WEBHOOK, RestError, json_response)
from .interactions import Callback, FakeInteraction, Rejection
from .messages import EPHEMERAL, LOADING, FakeMessage
from .rest import RestApi, RestRequest, no_content
from .validation import FormErrors, check_choices

if TYPE_CHECKING:
    from .server import FakeDiscord

# Callback types each interaction type accepts (PING interactions only exist for HTTP endpoints).
ALLOWED_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


class InteractionRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def register(self, api: RestApi) -> None:
        api.add("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, auth=False)
        api.add("POST", "/webhooks/{application_id}/{token}", self.followup, auth=False)
        api.add("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self.get_message, auth=False)
        api.add("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self.edit_message, auth=False)
        api.add("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self.delete_message, auth=False)

    async def callback(self, request: RestRequest) -> web.Response:
        interaction = self.fake.interactions.get(int(request.params["interaction_id"]))
        if interaction is None or interaction.token != request.params["token"]:
            raise RestError(404, UNKNOWN_INTERACTION, "Unknown interaction")
        if interaction.acknowledged:
            self._reject(interaction, request, 400, ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")
        deadline = self.fake.ack_deadline
        if deadline is not None and time.monotonic() - (interaction.dispatched_at or interaction.created_at) > deadline:
            self._reject(interaction, request, 404, UNKNOWN_INTERACTION, "Unknown interaction")
        callback_type = request.json.get("type")
        data = request.json.get("data") or {}
        if callback_type not in ALLOWED_CALLBACKS[interaction.type]:
            errors = FormErrors()
            errors.add(("type",), "INTERACTION_RESPONSE_TYPE_INVALID",
                       f"Callback type {callback_type} is not valid for interaction type {interaction.type}")
            self._reject(interaction, request, 400, INVALID_FORM_BODY, "Invalid Form Body", errors.tree)
        store = self.fake.store
        try:
            if callback_type == 4:
                interaction.original = store.create(interaction.channel_id, data, request.files, kind="response",
                                                    interaction=interaction)
            elif callback_type == 5:
                interaction.original = store.create(interaction.channel_id, {}, [], kind="response",
                                                    interaction=interaction, allow_empty=True,
                                                    extra_flags=LOADING | ((data.get("flags") or 0) & EPHEMERAL))
            elif callback_type == 6:
                interaction.original = interaction.message
            elif callback_type == 7:
                if interaction.message is None:
                    raise RestError(400, INVALID_FORM_BODY, "Only a component's message can be updated")
                interaction.original = store.edit(interaction.message, data, request.files)
            elif callback_type == 8:
                errors = FormErrors()
                check_choices(data.get("choices"), errors)
                if errors:
                    raise RestError(400, INVALID_FORM_BODY, "Invalid Form Body", errors.tree)
                interaction.choices = list(data["choices"])
            else:
                interaction.modal = data
        except RestError as exc:
            self._reject(interaction, request, exc.status, exc.code, exc.message, exc.errors)
        interaction.callbacks.append(Callback(callback_type, data, request.files, time.monotonic()))
        interaction.acknowledged_at = interaction.callbacks[-1].at
        if not request.flag("with_response"):
            return no_content()
        return json_response(self._callback_response(interaction, callback_type))

    async def followup(self, request: RestRequest) -> web.Response:
        interaction = self._by_token(request)
        original = interaction.original
        try:
            if interaction.ack_type == 5 and original is not None and original.loading and not original.deleted:
                # Discord turns the first followup after a deferred response into the edit of its placeholder.
                message = self.fake.store.edit(original, request.json, request.files)
            else:
                message = self.fake.store.create(interaction.channel_id, request.json, request.files, kind="followup",
                                                 interaction=interaction)
                interaction.followups.append(message)
        except RestError as exc:
            self._reject(interaction, request, exc.status, exc.code, exc.message, exc.errors)
        if not request.flag("wait"):
            return no_content()
        return json_response(message.payload(self.fake.world.bot.payload()))

    async def get_message(self, request: RestRequest) -> web.Response:
        message = self._message(self._by_token(request), request)
        return json_response(message.payload(self.fake.world.bot.payload()))

    async def edit_message(self, request: RestRequest) -> web.Response:
        interaction = self._by_token(request)
        message = self._message(interaction, request)
        try:
            self.fake.store.edit(message, request.json, request.files)
        except RestError as exc:
            self._reject(interaction, request, exc.status, exc.code, exc.message, exc.errors)
        return json_response(message.payload(self.fake.world.bot.payload()))

    async def delete_message(self, request: RestRequest) -> web.Response:
        self.fake.store.delete(self._message(self._by_token(request), request))
        return no_content()

    def _by_token(self, request: RestRequest) -> FakeInteraction:
        interaction = self.fake.interactions_by_token.get(request.params["token"])
        if interaction is None or int(request.params["application_id"]) != self.fake.world.application_id:
            raise RestError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")
        if time.monotonic() - interaction.created_at > self.fake.token_ttl:
            self._reject(interaction, request, 401, INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")
        if not interaction.acknowledged:
            self._reject(interaction, request, 404, UNKNOWN_WEBHOOK, "Unknown Webhook")
        return interaction

    def _message(self, interaction: FakeInteraction, request: RestRequest) -> FakeMessage:
        message_id = request.params["message_id"]
        if message_id == "@original":
            message = interaction.original
        else:
            message = next((m for m in interaction.messages if str(m.id) == message_id), None)
        if message is None or message.deleted:
            self._reject(interaction, request, 404, UNKNOWN_MESSAGE, "Unknown Message")
        assert message is not None
        return message

    def _callback_response(self, interaction: FakeInteraction, callback_type: int) -> dict:
        body: dict = {"interaction": {"id": str(interaction.id), "type": interaction.type}}
        resource: dict = {"type": callback_type}
        original = interaction.original
        if callback_type in (4, 5, 7) and original is not None:
            body["interaction"].update(response_message_id=str(original.id), response_message_loading=original.loading,
                                       response_message_ephemeral=original.ephemeral)
            resource["message"] = original.payload(self.fake.world.bot.payload())
        body["resource"] = resource
        return body

    @staticmethod
    def _reject(interaction: FakeInteraction, request: RestRequest, status: int, code: int, message: str,
                errors: dict | None = None) -> None:
        interaction.rejections.append(Rejection(request.method, request.path, status, code, message))
        raise RestError(status, code, message, errors)
