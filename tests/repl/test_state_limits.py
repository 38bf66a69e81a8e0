"""How big a saved state may be, and where a big one goes."""

from __future__ import annotations

from codeapi.state.store import state_key
from tests.conftest import run
from tests.repl.conftest import WarmClientFactory, executions


async def test_a_state_over_the_limit_is_not_saved_and_the_user_is_told(warm_client: WarmClientFactory) -> None:
    async with warm_client(MAX_FILE_SIZE_MB=1) as client:
        first = await run(client, "py", "small = 1")
        big = await run(client, "py", "import os\nblob = os.urandom(2 * 1024 * 1024)", session_id=first["session_id"])
        assert "Variables not saved" in big["stderr"] and "limit of 1 MB" in big["stderr"]
        after = await run(
            client, "py", "print('blob' in globals(), 'small' in globals())", session_id=first["session_id"]
        )
    # A new process that got back what was saved: nothing of that call, and never an older state.
    assert after["stdout"] == "False False\n"


async def test_a_state_over_the_inline_size_goes_to_the_blob_store_and_survives_a_restart(
    warm_client: WarmClientFactory, new_root: object
) -> None:
    root = new_root()  # type: ignore[operator]
    async with warm_client(root, STATE_MAX_REDIS_SIZE_MB=1) as before:
        first = await run(before, "py", "import numpy as np\nbig = np.zeros(400_000)\nbig[7] = 7")
        warm = executions(before).warm
        assert warm is not None and warm.states is not None
        record = await warm.states.metadata.get_state(first["session_id"])
        assert record is not None and record.blob_key == state_key(first["session_id"])
    async with warm_client(root, STATE_MAX_REDIS_SIZE_MB=1) as after:
        again = await run(after, "py", "print(big.sum(), big.shape)", session_id=first["session_id"])
    assert again["stdout"] == "7.0 (400000,)\n"
