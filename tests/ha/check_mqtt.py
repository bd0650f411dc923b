"""Feeds what Porchlight publishes on MQTT through Home Assistant's own code.

Reads JSON lines on stdin, one per MQTT message: {"topic", "payload", "retain"}.
Discovery configs (under `homeassistant/`) go through Home Assistant's MQTT discovery
handler itself (`homeassistant.components.mqtt.discovery.async_start`: its topic
matcher, abbreviation expansion, origin and `~` handling) and then through the
platform's `DISCOVERY_SCHEMA`, as `async_setup_entity_entry_helper` does. Every other
message must be the state or availability topic of a discovered config: alerts go
through the MQTT event entity's payload handling (`json_loads_object`, `event_type`
popped, `EventEntity._trigger_event`, which refuses an event type the config does not
list) and the entity's state attributes must encode as Home Assistant's JSON.

Prints one line per message; exits 1 at the first message Home Assistant would not
take, saying why.
"""

import asyncio
import importlib
import json
import sys
import tempfile

import voluptuous as vol
from homeassistant.components.event import EventEntity
from homeassistant.components.mqtt import discovery
from homeassistant.components.mqtt.const import DATA_MQTT
from homeassistant.components.mqtt.models import MqttData, ReceiveMessage
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.json import json_dumps
from homeassistant.util.json import json_loads_object

DISCOVERY_PREFIX = "homeassistant"


def matches(topic_filter, topic):
    """MQTT topic filter matching (`+` one level, `#` the rest), as a broker does."""
    levels = topic.split("/")
    for i, f in enumerate(topic_filter.split("/")):
        if f == "#":
            return True
        if i >= len(levels) or (f != "+" and f != levels[i]):
            return False
    return len(levels) == len(topic_filter.split("/"))


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


class Alerts(EventEntity):
    """The event entity as the MQTT platform sets it up from a discovered config."""

    def __init__(self, config):
        self._attr_event_types = config["event_types"]
        self.entity_id = "event.porchlight_check"


async def main():
    messages = [json.loads(line) for line in sys.stdin if line.strip()]
    hass = HomeAssistant(tempfile.mkdtemp())
    hass.data[DATA_MQTT] = MqttData(client=None, config=[])
    handlers = []

    async def subscribe(_hass, topic, on_message, qos):
        handlers.append((topic, on_message))
        return lambda: None

    async def no_integrations(_hass):
        return {}

    # Home Assistant's own discovery handler, subscribed to a broker we are: it gets
    # exactly the messages Porchlight published.
    discovery.mqtt.async_subscribe = subscribe
    discovery.async_get_mqtt = no_integrations
    await discovery.async_start(hass, DISCOVERY_PREFIX, None)
    if not handlers:
        fail("Home Assistant's discovery subscribed to nothing")

    discovered = {}
    refused = {}
    for component in sorted(discovery.SUPPORTED_COMPONENTS):

        @callback
        def found(payload, component=component):
            topic = payload.discovery_data["discovery_topic"]
            schema = importlib.import_module(
                f"homeassistant.components.mqtt.{component}"
            ).DISCOVERY_SCHEMA
            try:
                discovered[topic] = (component, schema(dict(payload)))
            except vol.Invalid as e:
                refused[topic] = f"the {component} platform's DISCOVERY_SCHEMA refuses it: {e}"

        async_dispatcher_connect(
            hass, discovery.MQTT_DISCOVERY_NEW.format(component, "mqtt"), found
        )

    alerts = 0
    for m in messages:
        topic, payload, retain = m["topic"], m["payload"], m.get("retain", False)
        if topic.startswith(DISCOVERY_PREFIX + "/"):
            if not retain:
                fail(f"{topic}: a discovery config must be retained")
            before = len(discovered)
            for topic_filter, handler in handlers:
                if matches(topic_filter, topic):
                    handler(ReceiveMessage(topic, payload, 0, retain, topic_filter, 0.0))
            await hass.async_block_till_done()
            if topic in refused:
                fail(f"{topic}: {refused[topic]}")
            if topic not in discovered or len(discovered) == before:
                fail(f"{topic}: Home Assistant's discovery did not take {payload!r}")
            component, config = discovered[topic]
            print(f"ok: {topic} discovered as {component} {config.get('name')!r}")
            continue
        matched = False
        for dtopic, (component, config) in discovered.items():
            if topic == config.get("availability_topic"):
                matched = True
                wanted = {config["payload_available"], config["payload_not_available"]}
                if payload not in wanted:
                    fail(f"{topic}: {payload!r} is neither of {sorted(wanted)}")
                print(f"ok: {topic} availability {payload!r}")
            if topic == config.get("state_topic") and component == "event":
                matched = True
                if retain:
                    fail(f"{topic}: Home Assistant ignores a retained event")
                try:
                    attributes = json_loads_object(payload)
                    event_type = str(attributes.pop("event_type"))
                except KeyError:
                    fail(f"{topic}: no event_type in {payload!r}")
                except ValueError as e:
                    fail(f"{topic}: not a JSON object: {e}")
                entity = Alerts(config)
                try:
                    entity._trigger_event(event_type, attributes)
                except ValueError as e:
                    fail(f"{topic}: {e}")
                state = json.loads(json_dumps(entity.state_attributes))
                if state.get("event_type") != event_type:
                    fail(f"{topic}: the entity's event_type is {state.get('event_type')!r}")
                alerts += 1
                print(f"ok: {topic} event {event_type!r} with {len(attributes)} attributes")
        if not matched:
            fail(f"{topic}: no discovered entity reads this topic")
    await hass.async_stop(force=True)
    print(f"Home Assistant {HA_VERSION}: {len(discovered)} discovery configs, {alerts} alerts taken")


asyncio.run(main())
