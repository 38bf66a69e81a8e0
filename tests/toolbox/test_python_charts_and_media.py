"""Charts, images, OCR and video made by sandboxed Python and the system tools it calls."""

from __future__ import annotations

import struct

import httpx

from tests.toolbox.conftest import download, run_ok


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


SEABORN = """
import warnings
warnings.simplefilter('error')  # a missing glyph is a warning: fail on it
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
frame = pd.DataFrame(np.arange(12).reshape(3, 4), index=['a', 'b', 'c'], columns=list('wxyz'))
axes = sns.heatmap(frame, annot=True)
axes.set_title('销售额 データ 매출 Ελλάδα Россия')
plt.savefig('heatmap.png', dpi=50)
print(len(axes.texts), axes.texts[-1].get_text())
print('DONE')
"""


async def test_a_seaborn_heatmap_with_cjk_greek_and_cyrillic_text_renders_every_glyph(
    toolbox: httpx.AsyncClient,
) -> None:
    body = await run_ok(toolbox, "py", SEABORN)
    assert body["stdout"].splitlines()[0] == "12 11"
    assert png_size(await download(toolbox, body, "heatmap.png")) == (320, 240)


PLOTLY = """
import plotly.express as px
figure = px.bar(x=['North', 'South'], y=[42, 17], title='Sales')
figure.write_image('bar.png', width=300, height=200)
figure.write_html('bar.html', include_plotlyjs=False)
print('Sales' in open('bar.html').read())
from PIL import Image
print(len(Image.open('bar.png').convert('RGB').getcolors(1 << 16)) > 2)  # bars and text, not a blank canvas
print('DONE')
"""


async def test_a_plotly_chart_exports_to_a_static_png(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", PLOTLY)
    assert body["stdout"].splitlines()[:2] == ["True", "True"]
    assert png_size(await download(toolbox, body, "bar.png")) == (300, 200)


OCR = """
from PIL import Image, ImageDraw, ImageFont
image = Image.new('L', (900, 140), 255)
font = ImageFont.truetype('/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', 48)
ImageDraw.Draw(image).text((20, 40), 'Invoice total 4217 EUR', font=font, fill=0)
image.save('scan.png')
import pytesseract
print(pytesseract.image_to_string(Image.open('scan.png')).strip())
import subprocess
print(subprocess.run(['tesseract', 'scan.png', '-', '--psm', '7'], capture_output=True, text=True).stdout.strip())
print('DONE')
"""


async def test_ocr_reads_the_text_of_a_rendered_image(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", OCR)
    assert body["stdout"].splitlines()[:2] == ["Invoice total 4217 EUR"] * 2


GIF = """
import subprocess
from PIL import Image, ImageDraw
for index in range(6):
    frame = Image.new('RGB', (64, 48), 'white')
    ImageDraw.Draw(frame).rectangle([index * 8, 10, index * 8 + 10, 30], fill='red')
    frame.save(f'frame{index}.png')
def ffmpeg(*args):
    subprocess.run(['ffmpeg', '-loglevel', 'error', '-y', '-framerate', '5', '-i', 'frame%d.png', *args], check=True)
ffmpeg('moving.gif')
ffmpeg('-pix_fmt', 'yuv420p', 'moving.mp4')
for name in ('moving.gif', 'moving.mp4'):
    probe = subprocess.run(
        ['ffprobe', '-v', 'error', '-count_frames', '-select_streams', 'v:0',
         '-show_entries', 'stream=codec_name,width,height,nb_read_frames', '-of', 'csv=p=0', name],
        capture_output=True, text=True, check=True)
    print(probe.stdout.strip())
import imageio.v3 as iio
print(iio.imread('moving.gif').shape)
print('DONE')
"""


async def test_ffmpeg_makes_a_gif_and_an_mp4_from_frames(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", GIF)
    assert body["stdout"].splitlines()[:3] == ["gif,64,48,6", "h264,64,48,6", "(6, 48, 64, 3)"]
    assert (await download(toolbox, body, "moving.gif")).startswith(b"GIF89a")


IMAGES = """
import cv2, numpy as np, qrcode, barcode, cairosvg, skimage, wordcloud
from barcode.writer import ImageWriter
image = np.zeros((60, 60), np.uint8)
cv2.rectangle(image, (10, 10), (49, 49), 255, -1)
contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
print(len(contours), cv2.contourArea(contours[0]))
qrcode.make('https://example.org').save('qr.png')
found, _, _ = cv2.QRCodeDetector().detectAndDecode(cv2.imread('qr.png'))
print(found)
barcode.get('ean13', '590123412345', writer=ImageWriter()).save('ean')
cairosvg.svg2png(bytestring=b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"><rect width="20" height="10" fill="blue"/></svg>', write_to='box.png')
from PIL import Image
print(Image.open('box.png').size, Image.open('ean.png').format)
cloud = wordcloud.WordCloud(width=80, height=40, font_path='/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf').generate('data data chart pdf')
print(sorted(cloud.words_)[:2])
print(skimage.measure.label(np.array([[1, 0, 1], [1, 0, 1]])).max())
import subprocess
print(subprocess.run(['convert', 'box.png', '-resize', '200%', 'gif:-'], capture_output=True, check=True).stdout[:6])
print('DONE')
"""


async def test_opencv_qr_barcode_svg_wordcloud_and_imagemagick_work_on_images(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", IMAGES)
    assert body["stdout"].splitlines()[:6] == [
        "1 1521.0",
        "https://example.org",
        "(20, 10) PNG",
        "['chart', 'data']",
        "2",
        "b'GIF89a'",
    ]


ANALYSIS = """
import numpy as np, pandas as pd, statsmodels.formula.api as smf, sympy, networkx, polars, pyarrow
from numba import njit
from lifelines import KaplanMeierFitter
frame = pd.DataFrame({'x': np.arange(20.0)})
frame['y'] = 3 * frame.x + 2
print(round(smf.ols('y ~ x', data=frame).fit().params['x'], 6))
print(sympy.integrate(sympy.Symbol('t') ** 2, (sympy.Symbol('t'), 0, 3)))
print(networkx.shortest_path_length(networkx.path_graph(5), 0, 4))
print(polars.DataFrame({'a': [1, 2, 3]}).select(polars.col('a').sum()).item())
@njit
def total(values):
    result = 0.0
    for value in values:
        result += value
    return result
print(total(np.ones(10)))
print(KaplanMeierFitter().fit([5, 6, 6, 2, 4], [1, 0, 0, 1, 1]).median_survival_time_)
print(pyarrow.table({'a': [1, 2]}).num_rows)
print('DONE')
"""


async def test_statistics_symbolic_math_graphs_and_jit_compile_run(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "py", ANALYSIS)
    assert body["stdout"].splitlines()[:7] == ["3.0", "9", "4", "6", "10.0", "5.0", "2"]


TOOLS = """
set -e
printf '{"a": [1, 2, 3]}' | jq '.a | add'
echo 'scale=3; 22/7' | bc
sqlite3 :memory: 'create table t(x); insert into t values (4), (5); select sum(x) from t;'
printf 'hello' > note.txt && zip -q notes.zip note.txt && unzip -p notes.zip note.txt && echo
file -b --mime-type notes.zip
printf '# Title\\n\\nText' | pandoc -f markdown -t html
gs -q -dNOPAUSE -dBATCH -sDEVICE=pdfwrite -sOutputFile=page.pdf -c '/Helvetica findfont 20 scalefont setfont 72 720 moveto (Ghostscript page) show showpage'
pdftotext page.pdf - | head -1
echo DONE
"""


async def test_system_tools_run_in_the_sandbox(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(toolbox, "bash", TOOLS)
    assert body["stdout"].splitlines()[:8] == [
        "6",
        "3.142",
        "9",
        "hello",
        "application/zip",
        '<h1 id="title">Title</h1>',
        "<p>Text</p>",
        "Ghostscript page",
    ]
