"""The common libraries of Node.js, TypeScript, R, PHP, Go and Rust, found without any setup."""

from __future__ import annotations

import httpx

from tests.toolbox.conftest import run_ok

NODE_REQUIRE = """
const _ = require('lodash');
const dayjs = require('dayjs');
const { DateTime } = require('luxon');
const { v4: uuid } = require('uuid');
const Papa = require('papaparse');
const { parse } = require('csv-parse/sync');
const math = require('mathjs');
const ss = require('simple-statistics');
const cheerio = require('cheerio');
const Handlebars = require('handlebars');
const { z } = require('zod');
const { Command } = require('commander');
const { PDFDocument } = require('pdf-lib');
const ExcelJS = require('exceljs');
const XLSX = require('xlsx');
const sharp = require('sharp');
const { addDays } = require('date-fns');
const axios = require('axios');
console.log(_.sum([1, 2, 3]), dayjs('2024-02-28').add(1, 'day').format('YYYY-MM-DD'),
  DateTime.fromISO('2024-01-01').plus({ months: 1 }).toISODate(), uuid().length);
console.log(Papa.parse('a,b\\n1,2', { header: true }).data[0].b, parse('x,y\\n3,4', { columns: true })[0].y,
  math.evaluate('sqrt(16) + 2'), ss.mean([1, 2, 3, 6]));
console.log(cheerio.load('<ul><li>one</li><li>two</li></ul>')('li').last().text(),
  Handlebars.compile('Hi {{name}}')({ name: 'Ada' }), z.number().safeParse('x').success,
  new Command().name('tool').name(), addDays(new Date(2024, 0, 31), 1).getDate(), typeof axios.get);
(async () => {
  const pdf = await PDFDocument.create();
  pdf.addPage();
  const parsed = await PDFDocument.load(await pdf.save());
  const book = new ExcelJS.Workbook();
  book.addWorksheet('Sales').addRow(['North', 42]);
  const again = new ExcelJS.Workbook();
  await again.xlsx.load(await book.xlsx.writeBuffer());
  const sheet = XLSX.utils.aoa_to_sheet([['a', 1]]);
  const png = await sharp({ create: { width: 4, height: 3, channels: 3, background: 'red' } }).png().toBuffer();
  const meta = await sharp(png).metadata();
  console.log(parsed.getPageCount(), again.getWorksheet('Sales').getCell('B1').value, sheet.B1.v, meta.width, meta.height);
  console.log('DONE');
})();
"""


async def test_node_finds_the_global_modules_with_require(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "js", NODE_REQUIRE)
    assert body["stdout"].splitlines()[:4] == [
        "6 2024-02-29 2024-02-01 36",
        "2 4 6 3",
        "two Hi Ada false tool 1 function",
        "1 42 1 4 3",
    ]


NODE_IMPORT = """
import chalk from 'chalk';
import { marked } from 'marked';
import { Jimp } from 'jimp';
const image = new Jimp({ width: 5, height: 2, color: 0xff0000ff });
console.log(marked.parse('# Hi').trim(), typeof chalk.red, image.bitmap.width);
console.log('DONE');
"""


async def test_node_finds_esm_only_modules_with_import(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "js", NODE_IMPORT)
    assert body["stdout"].splitlines()[0] == "<h1>Hi</h1> function 5"


TYPESCRIPT = """
import _ from 'lodash';
import { DateTime } from 'luxon';
import Papa from 'papaparse';
interface Row { region: string; sales: string }
const rows: Row[] = Papa.parse<Row>('region,sales\\nNorth,42\\nSouth,17', { header: true }).data;
const total: number = _.sumBy(rows, (row: Row) => Number(row.sales));
console.log(total, DateTime.fromISO('2024-03-01').weekdayLong);
console.log('DONE');
"""


async def test_typescript_imports_the_same_modules(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "ts", TYPESCRIPT)
    assert body["stdout"].splitlines()[0] == "59 Friday"


R_PROGRAM = """
suppressPackageStartupMessages({
  library(dplyr); library(tidyr); library(readr); library(stringr); library(lubridate)
  library(ggplot2); library(data.table); library(jsonlite); library(readxl); library(openxlsx)
})
sales <- tibble(region = c("North", "South", "North"), amount = c(40, 17, 2))
totals <- sales %>% group_by(region) %>% summarise(total = sum(amount)) %>% arrange(desc(total))
cat(totals$region[1], totals$total[1], "\\n")
cat(str_to_upper("ada"), as.character(ymd("2024-02-28") + days(1)), toJSON(list(a = 1), auto_unbox = TRUE), "\\n")
write.xlsx(as.data.frame(totals), "totals.xlsx")
cat(read_excel("totals.xlsx")$total, "\\n")
ggsave("plot.png", ggplot(totals, aes(region, total)) + geom_col(), width = 2, height = 2, dpi = 50)
cat(file.exists("plot.png"), nrow(fread("a,b\\n1,2\\n3,4")), "\\n")
cat("DONE\\n")
"""


async def test_r_uses_the_tidyverse_packages_and_writes_excel_and_png(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "r", R_PROGRAM)
    assert body["stdout"].splitlines()[:4] == [
        "North 42 ",
        'ADA 2024-02-29 {"a":1} ',
        "42 17 ",
        "TRUE 2 ",
    ]


PHP_PROGRAM = """<?php
echo mb_strtoupper('straße'), ' ', bcadd('0.1', '0.2', 1), "\\n";
$xml = new SimpleXMLElement('<r><item>42</item></r>');
echo $xml->item, ' ', (new NumberFormatter('de_DE', NumberFormatter::DECIMAL))->format(1234.5), "\\n";
$image = imagecreatetruecolor(4, 3);
ob_start(); imagepng($image); $png = ob_get_clean();
echo getimagesizefromstring($png)[0], "\\n";
$zip = new ZipArchive(); $zip->open('a.zip', ZipArchive::CREATE); $zip->addFromString('n.txt', 'hi'); $zip->close();
$zip->open('a.zip'); echo $zip->getFromName('n.txt'), "\\n";
echo "DONE\\n";
"""


async def test_php_has_mbstring_bcmath_xml_intl_gd_and_zip(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "php", PHP_PROGRAM)
    assert body["stdout"].splitlines()[:4] == ["STRASSE 0.3", "42 1.234,5", "4", "hi"]


GO_PROGRAM = """package main

import (
\t"fmt"

\t"github.com/google/uuid"
\t"github.com/shopspring/decimal"
\t"github.com/tidwall/gjson"
\t"golang.org/x/text/cases"
\t"golang.org/x/text/language"
\t"gopkg.in/yaml.v3"
)

func main() {
\tvar doc map[string]int
\tyaml.Unmarshal([]byte("a: 1"), &doc)
\tsum := decimal.RequireFromString("0.1").Add(decimal.RequireFromString("0.2"))
\tfmt.Println(len(uuid.NewString()), sum, gjson.Get(`{"a":{"b":7}}`, "a.b").Int(), doc["a"])
\tfmt.Println(cases.Title(language.English).String("hello world"))
\tfmt.Println("DONE")
}
"""


async def test_go_imports_debian_packaged_libraries(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "go", GO_PROGRAM)
    assert body["stdout"].splitlines()[:2] == ["36 0.3 7 1", "Hello World"]


RUST_PROGRAM = """use itertools::Itertools;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Serialize, Deserialize)]
struct Row {
    region: String,
    sales: u32,
}

fn main() -> anyhow::Result<()> {
    let mut reader = csv::Reader::from_reader("region,sales\\nNorth,42\\nSouth,17\\n".as_bytes());
    let rows: Vec<Row> = reader.deserialize().collect::<Result<_, _>>()?;
    println!("{}", serde_json::to_string(&rows[0])?);
    let digits = regex::Regex::new(r"\\d+")?;
    println!("{}", digits.find_iter("a1b22c333").map(|m| m.as_str()).join(","));
    let date = chrono::NaiveDate::from_ymd_opt(2024, 2, 28).unwrap() + chrono::Duration::days(1);
    println!("{} {}", date, hex(&Sha256::digest(b"abc")[..4]));
    let roll: u8 = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=6);
    println!("{}", (1..=6).contains(&roll));
    println!("DONE");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{:02x}", b)).collect()
}
"""


async def test_rust_uses_the_prebuilt_crates_without_cargo(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "rs", RUST_PROGRAM)
    assert body["stdout"].splitlines()[:4] == [
        '{"region":"North","sales":42}',
        "1,22,333",
        "2024-02-29 ba7816bf",
        "true",
    ]


TYPE_CHECK = """
import { execFileSync } from 'child_process';
import { writeFileSync } from 'fs';
writeFileSync('check.ts', [
  "import _ from 'lodash';",
  "import { DateTime } from 'luxon';",
  "import Papa from 'papaparse';",
  "const total: number = _.sum([1, 2]);",
  "const wrong: string = _.sum([1, 2]);",
  "DateTime.fromISO(42);",
  "const csv: number = Papa.unparse([[1]]);",
].join('\\n'));
let report = '';
try {
  execFileSync('/opt/node/bin/node', ['/opt/ts/typescript/bin/tsc', '--noEmit', '--strict', '--esModuleInterop',
    '--moduleResolution', 'node', 'check.ts'], { encoding: 'utf8' });
} catch (error: any) {
  report = error.stdout;
}
console.log(Array.from(report.matchAll(/check\\.ts\\((\\d+),\\d+\\): error (TS\\d+)/g), (m) => `${m[1]}:${m[2]}`).join(' '));
console.log('DONE');
"""


async def test_typescript_type_checks_against_the_modules_types(toolbox: httpx.AsyncClient) -> None:
    # Expected: tsc finds each module's types (bundled, or from @types) without a path; a
    # program that misuses them fails with a type error, not "cannot find module" (TS2307).
    body = await run_ok(toolbox, "ts", TYPE_CHECK)
    assert body["stdout"].splitlines()[0] == "5:TS2322 6:TS2345 7:TS2322"
