"""Reads the automation examples in docs/hub-integration.md with Home Assistant's own
automation config validation (`automation.config.async_validate_config_item`, which
runs the state trigger's and the template condition's own validation).

The form for Home Assistant before 2024.10 (`trigger:`/`platform: state`) must be
valid; the form for 2024.10 and later (`triggers:`/`trigger: state`) must be refused by
this older release, which shows the versions the doc gives are right. Exits 1 if either
is not so, and if the doc does not have both.
"""

import asyncio
import re
import sys
import tempfile

import yaml
from homeassistant.core import HomeAssistant  # first: the others import it back
from homeassistant import loader
from homeassistant.components.automation.config import async_validate_config_item
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.helpers import area_registry, device_registry, entity_registry


async def main(doc):
    text = open(doc, encoding="utf-8").read()
    blocks = [
        yaml.safe_load(b)["automation"][0]
        for b in re.findall(r"```yaml\n(automation:\n.*?)```", text, re.S)
    ]
    new = [b for b in blocks if "triggers" in b]
    old = [b for b in blocks if "trigger" in b]
    if len(new) != 1 or len(old) != 1:
        print(f"FAIL: {doc} needs one automation in each syntax, has {len(blocks)}")
        sys.exit(1)
    hass = HomeAssistant(tempfile.mkdtemp())
    loader.async_setup(hass)
    await area_registry.async_load(hass)
    await device_registry.async_load(hass)
    await entity_registry.async_load(hass)
    await hass.async_start()
    ok = True

    async def refusal(automation):
        """Why Home Assistant refuses `automation` (it raises), or None."""
        try:
            result = await async_validate_config_item(hass, "automation.porch", automation)
        except Exception as e:  # voluptuous.Invalid or HomeAssistantError
            return str(e) or type(e).__name__
        if result is None or result.validation_failed:
            return "validation failed"
        return None

    error = await refusal(old[0])
    if error:
        print(f"FAIL: the pre-2024.10 automation is refused by Home Assistant {HA_VERSION}: {error}")
        ok = False
    else:
        print(f"ok: the pre-2024.10 automation is valid for Home Assistant {HA_VERSION}")
    error = await refusal(new[0])
    if error and "triggers" in error:
        print(f"ok: Home Assistant {HA_VERSION} refuses the 2024.10 form: {error}")
    else:
        print(f"FAIL: Home Assistant {HA_VERSION} did not refuse the 2024.10 form for its triggers ({error!r})")
        ok = False
    await hass.async_stop(force=True)
    sys.exit(0 if ok else 1)


asyncio.run(main(sys.argv[1]))
