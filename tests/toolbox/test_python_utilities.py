"""The utility libraries a data script reaches for, each doing one real thing in the sandbox."""

from __future__ import annotations

import httpx

from tests.toolbox.conftest import run_ok

UTILITIES = """
from cryptography.fernet import Fernet
key = Fernet.generate_key()
print(Fernet(key).decrypt(Fernet(key).encrypt(b'secret')).decode())
import chardet
print(chardet.detect('Привет, как дела? Это проверка кодировки.'.encode('cp1251'))['encoding'].lower())
import regex
print(regex.findall(r'\\p{Greek}+', 'abc αβγ def'))
import toml, yaml
print(toml.loads('a = 1')['a'], yaml.safe_dump({'b': 2}).strip())
import io
from rich.console import Console
console = Console(record=True, width=40, file=io.StringIO())
console.print('[bold]rich[/bold] text')
print(console.export_text().strip())
from faker import Faker
Faker.seed(1)
print(bool(Faker().name()))
from pydantic import BaseModel, ValidationError
class Order(BaseModel):
    quantity: int
try:
    Order(quantity='many')
except ValidationError as error:
    print(error.error_count())
import tenacity
attempts = []
@tenacity.retry(stop=tenacity.stop_after_attempt(3))
def flaky():
    attempts.append(1)
    if len(attempts) < 3:
        raise ValueError
    return len(attempts)
print(flaky())
import xxhash
print(xxhash.xxh64(b'abc').hexdigest())
from sortedcontainers import SortedList
print(list(SortedList([3, 1, 2])))
import numexpr, numpy as np
print(numexpr.evaluate('a * 2 + 1', local_dict={'a': np.arange(3)}).tolist())
from dateutil import parser
import pytz
print(parser.parse('2024-03-01T12:00:00Z').astimezone(pytz.timezone('Asia/Tokyo')).hour)
import requests, httpx, xlrd, extract_msg, joblib, patsy
print(joblib.Parallel(n_jobs=1)(joblib.delayed(abs)(value) for value in (-1, -2)))
print('DONE')
"""


async def test_utility_libraries_work_in_the_sandbox(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", UTILITIES)
    assert body["stdout"].splitlines()[:14] == [
        "secret",
        "windows-1251",
        "['αβγ']",
        "1 b: 2",
        "rich text",
        "True",
        "1",
        "3",
        "44bc2cf5ad770999",
        "[1, 2, 3]",
        "[1, 3, 5]",
        "21",
        "[1, 2]",
        "DONE",
    ]
