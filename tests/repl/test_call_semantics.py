"""Each call of a session behaves as a new process that got the previous call's variables back.

LibreChat tells its model that every execution is a new process, so the model never closes a figure,
changes back to /mnt/data or undoes a setting. Each case below changes something in one call, as
such a model would, and checks that the next call of the same session sees what a brand-new session
sees (the probe's output is compared with a fresh session's), while the call's variable survives.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import run

# name -> (what the first call changes, the probe the second call prints)
LEAKS = {
    "open figures": (
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.savefig('a.png')",
        "import matplotlib.pyplot as plt\nprint(plt.get_fignums(), len(plt.gca().lines))",
    ),
    "matplotlib rcParams": (
        "import matplotlib\nmatplotlib.rcParams['lines.linewidth'] = 9",
        "import matplotlib\nprint(matplotlib.rcParams['lines.linewidth'])",
    ),
    "working directory": (
        "import os\nos.makedirs('/tmp/elsewhere', exist_ok=True)\nos.chdir('/tmp/elsewhere')",
        "import os\nprint(os.getcwd())",
    ),
    "numpy print options": (
        "import numpy as np\nnp.set_printoptions(precision=2)",
        "import numpy as np\nprint(np.array([1 / 3]))",
    ),
    "pandas options": (
        "import pandas as pd\npd.set_option('display.max_rows', 3)",
        "import pandas as pd\nprint(pd.get_option('display.max_rows'))",
    ),
    "warnings filters": (
        "import warnings\nwarnings.simplefilter('error')",
        "import warnings\nwarnings.warn('just a warning')\nprint('went on')",
    ),
    "recursion limit": ("import sys\nsys.setrecursionlimit(80)", "import sys\nprint(sys.getrecursionlimit())"),
    "environment": ("import os\nos.environ['LEAKED'] = 'yes'", "import os\nprint(os.environ.get('LEAKED'))"),
    "builtins": ("import builtins\nbuiltins.round = lambda *args: 'patched'", "print(round(2.5))"),
    "standard-library modules": (
        "import json\njson.dumps = lambda *args, **kwargs: 'patched'",
        "import json\nprint(json.dumps(1))",
    ),
    "sys.path and sys.modules": (
        "import sys, types\nsys.path.insert(0, '/leaked')\nsys.modules['leaked'] = types.ModuleType('leaked')",
        "import sys\nprint('/leaked' in sys.path, 'leaked' in sys.modules)",
    ),
    "signal handlers": (
        "import signal\nsignal.signal(signal.SIGTERM, lambda *args: None)",
        "import signal\nprint(signal.getsignal(signal.SIGTERM))",
    ),
    "threads": (
        "import threading, time\n"
        "def chatter():\n    while True:\n        print('thread', flush=True)\n        time.sleep(0.01)\n"
        "threading.Thread(target=chatter, daemon=True).start()",
        "import threading, time\ntime.sleep(0.3)\nprint(threading.active_count())",
    ),
    "child processes": (
        "import subprocess\nsubprocess.Popen(['sh', '-c', 'while :; do echo child; sleep 0.01; done'])",
        "import os, time\ntime.sleep(0.3)\nprint(sum(name.isdigit() for name in os.listdir('/proc')))",
    ),
}


@pytest.mark.parametrize("case", sorted(LEAKS))
async def test_nothing_but_the_variables_reaches_the_next_call(warm: httpx.AsyncClient, case: str) -> None:
    change, probe = LEAKS[case]
    fresh = await run(warm, "py", probe)
    first = await run(warm, "py", f"kept_value = 'kept'\n{change}")
    assert first["stderr"] == "", first["stderr"]
    second = await run(warm, "py", f"{probe}\nprint(kept_value)", session_id=first["session_id"])
    assert second["session_id"] == first["session_id"]
    assert second["stdout"] == fresh["stdout"] + "kept\n"
    assert second["stderr"] == fresh["stderr"]


async def test_a_second_chart_holds_only_its_own_line(warm: httpx.AsyncClient) -> None:
    # The case a chat user met: the second chart carried the first chart's line.
    plot = "import matplotlib.pyplot as plt\nplt.plot({})\nplt.savefig('{}')\nprint(len(plt.gca().lines))"
    first = await run(warm, "py", plot.format([1, 2, 3], "a.png"))
    second = await run(warm, "py", plot.format([3, 2, 1], "b.png"), session_id=first["session_id"])
    assert (first["stdout"], second["stdout"]) == ("1\n", "1\n")
    assert [item["name"] for item in second["files"]] == ["b.png"]


async def test_a_relative_output_after_a_chdir_in_the_previous_call_is_returned(warm: httpx.AsyncClient) -> None:
    first = await run(warm, "py", "import os\nos.makedirs('/tmp/w', exist_ok=True)\nos.chdir('/tmp/w')")
    second = await run(warm, "py", "open('out.csv', 'w').write('a,b\\n')", session_id=first["session_id"])
    assert [item["name"] for item in second["files"]] == ["out.csv"]


async def test_what_restoring_the_variables_prints_is_part_of_the_next_calls_output(warm: httpx.AsyncClient) -> None:
    # Unpickling runs a class's __setstate__: in a new process it would print before the code runs.
    noisy = (
        "class Noisy:\n"
        "    def __setstate__(self, state):\n"
        "        print('restored')\n"
        "        self.__dict__.update(state)\n"
        "value = Noisy()\nvalue.n = 3"
    )
    first = await run(warm, "py", noisy)
    second = await run(warm, "py", "print(value.n)", session_id=first["session_id"])
    assert second["stdout"] == "restored\n3\n"
