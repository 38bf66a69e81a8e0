"""Office and PDF files made and read by sandboxed Python, as a user's report script would."""

from __future__ import annotations

import io
import zipfile

import httpx

from tests.toolbox.conftest import download, run_ok

WORD = """
from docx import Document
from docx.shared import Pt
doc = Document()
doc.add_heading('Quarterly report', level=1)
doc.add_paragraph('Revenue grew by 12%.').runs[0].font.size = Pt(11)
table = doc.add_table(rows=2, cols=2)
table.cell(0, 0).text, table.cell(0, 1).text = 'Region', 'Sales'
table.cell(1, 0).text, table.cell(1, 1).text = 'North', '42'
doc.save('report.docx')
again = Document('report.docx')
print([p.text for p in again.paragraphs])
print(again.tables[0].cell(1, 1).text)
import mammoth
print(mammoth.convert_to_html(open('report.docx', 'rb')).value[:60])
print('DONE')
"""


async def test_a_word_document_has_its_heading_paragraph_and_table(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", WORD)
    lines = body["stdout"].splitlines()
    assert lines[0] == "['Quarterly report', 'Revenue grew by 12%.']"
    assert lines[1] == "42"
    assert lines[2].startswith("<h1>Quarterly report</h1><p>Revenue grew by 12%.</p>")
    document = zipfile.ZipFile(io.BytesIO(await download(toolbox, body, "report.docx")))
    xml = document.read("word/document.xml").decode()
    assert "Quarterly report" in xml and "<w:tbl>" in xml


SLIDES = """
from pptx import Presentation
from pptx.chart.data import CategoryChartData
from pptx.enum.chart import XL_CHART_TYPE
from pptx.util import Inches
deck = Presentation()
slide = deck.slides.add_slide(deck.slide_layouts[5])
slide.shapes.title.text = 'Sales by region'
data = CategoryChartData()
data.categories = ['North', 'South']
data.add_series('2024', (42, 17))
slide.shapes.add_chart(XL_CHART_TYPE.COLUMN_CLUSTERED, Inches(1), Inches(2), Inches(6), Inches(4), data)
deck.save('deck.pptx')
again = Presentation('deck.pptx')
shapes = again.slides[0].shapes
print(len(again.slides), shapes.title.text, [s.chart.series[0].values for s in shapes if s.has_chart])
print('DONE')
"""


async def test_a_powerpoint_deck_has_a_titled_slide_with_a_chart(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", SLIDES)
    assert body["stdout"].splitlines()[0] == "1 Sales by region [(42.0, 17.0)]"
    deck = zipfile.ZipFile(io.BytesIO(await download(toolbox, body, "deck.pptx")))
    assert any(name.startswith("ppt/charts/chart") for name in deck.namelist())


WORKBOOK = """
import pandas as pd
frame = pd.DataFrame({'region': ['North', 'South', 'East'], 'sales': [42, 17, 30]})
with pd.ExcelWriter('sales.xlsx', engine='xlsxwriter') as writer:
    frame.to_excel(writer, sheet_name='Sales', index=False)
    sheet = writer.sheets['Sales']
    sheet.write_formula('B5', '=SUM(B2:B4)')
    chart = writer.book.add_chart({'type': 'column'})
    chart.add_series({'values': '=Sales!$B$2:$B$4'})
    sheet.insert_chart('D2', chart)
import openpyxl
book = openpyxl.load_workbook('sales.xlsx')
print(book.sheetnames, book['Sales']['A3'].value, book['Sales']['B5'].value)
print(pd.read_excel('sales.xlsx').sales.sum())
from tabulate import tabulate
print(tabulate(frame.head(1), headers='keys', tablefmt='github', showindex=False).splitlines()[2])
print('DONE')
"""


async def test_an_excel_workbook_has_its_rows_a_formula_and_a_chart(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", WORKBOOK)
    lines = body["stdout"].splitlines()
    assert lines[0] == "['Sales'] South =SUM(B2:B4)"
    assert lines[1] == "89"
    assert lines[2].replace(" ", "") == "|North|42|"
    book = zipfile.ZipFile(io.BytesIO(await download(toolbox, body, "sales.xlsx")))
    assert "xl/charts/chart1.xml" in book.namelist()


PDF = """
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle
from reportlab.lib.styles import getSampleStyleSheet
rows = [['Region', 'Sales'], ['North', '42'], ['South', '17']]
table = Table(rows)
table.setStyle(TableStyle([('GRID', (0, 0), (-1, -1), 0.5, colors.black)]))
SimpleDocTemplate('invoice.pdf', pagesize=A4).build([Paragraph('Invoice 2024-117', getSampleStyleSheet()['Title']), table])
import pdfplumber
with pdfplumber.open('invoice.pdf') as pdf:
    page = pdf.pages[0]
    print('Invoice 2024-117' in page.extract_text())
    print(page.extract_table())
from pypdf import PdfReader
print(len(PdfReader('invoice.pdf').pages))
from pdfminer.high_level import extract_text
print('North' in extract_text('invoice.pdf'))
from fpdf import FPDF
other = FPDF()
other.add_page()
other.set_font('helvetica', size=14)
other.cell(text='Made with fpdf2')
other.output('fpdf.pdf')
print(PdfReader('fpdf.pdf').pages[0].extract_text())
from pdf2image import convert_from_path
image = convert_from_path('invoice.pdf', dpi=50)[0]
print(image.size)
print('DONE')
"""


async def test_a_pdf_is_made_and_its_text_and_table_read_back(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", PDF)
    lines = body["stdout"].splitlines()
    assert lines[:5] == [
        "True",
        "[['Region', 'Sales'], ['North', '42'], ['South', '17']]",
        "1",
        "True",
        "Made with fpdf2",
    ]
    assert lines[5] == "(414, 585)"  # A4 at 50 dpi, rendered by poppler's pdftoppm
    assert (await download(toolbox, body, "invoice.pdf")).startswith(b"%PDF-")


TEMPLATES = """
import markdown, jinja2, pypandoc, yaml, bs4, lxml.etree
html = markdown.markdown('# Title\\n\\n* one\\n* two')
soup = bs4.BeautifulSoup(html, 'lxml')
print(soup.h1.text, [li.text for li in soup.find_all('li')])
print(jinja2.Template('{{ name | upper }}').render(name='ada'))
print(pypandoc.convert_text('**bold**', 'html', format='md').strip())
print(yaml.safe_load('a: [1, 2]'))
from docxtpl import DocxTemplate
from docx import Document
template = Document()
template.add_paragraph('Dear {{ name }},')
template.save('template.docx')
letter = DocxTemplate('template.docx')
letter.render({'name': 'Ada'})
letter.save('letter.docx')
print(Document('letter.docx').paragraphs[0].text)
print('DONE')
"""


async def test_markdown_templates_and_pandoc_turn_text_into_documents(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", TEMPLATES)
    assert body["stdout"].splitlines()[:5] == [
        "Title ['one', 'two']",
        "ADA",
        "<p><strong>bold</strong></p>",
        "{'a': [1, 2]}",
        "Dear Ada,",
    ]
