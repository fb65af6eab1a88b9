"""The atlas as a static site: HTML pages built from the chunk records, opening from ``file://``
(relative links, inline CSS and JavaScript, no server, network or CDN).

``pages(info, layers)`` is a pure function returning ``{relative path: html}``; :func:`write_site`
writes them atomically. ``layers``: a list of ``{'layer', 'filters': [filter rows], 'diverse':
{filter: record}, 'examples': {filter: [example rows]}}`` in forward order, a filter row being
``{'filter', 'loss', 'dead', 'rescued', 'selectivity', 'png', 'gif'}`` (``rescued`` absent in records
written before it; paths relative to the site's root).
"""
from __future__ import annotations

import html
import json
import os

from jaxvis.edge.files import atomic_path, file_stem

CSS = """body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}
a{color:#1a5fb4}table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:middle}img{image-rendering:auto}.thumbs img{width:48px;height:48px;margin-right:2px}
.grid{display:flex;flex-wrap:wrap;gap:10px}.cell{width:140px;font-size:12px}.cell img{width:128px;height:128px;
cursor:pointer}.dead{opacity:.45}.big{width:384px;height:384px}.row img{width:128px;height:128px;margin:2px}
pre{background:#eee;padding:8px;overflow:auto;max-width:60em}nav{margin-bottom:1em}"""

RESCUED_NOTE = (', rescued (the first run left it dead; this image is the preset\'s rescue config run from the same '
                'key and start: see FilterConfig.rescue)')
SORT_JS = """function sortBy(k){const g=document.getElementById('grid');const c=[...g.children];
c.sort((a,b)=>k==='filter'?a.dataset.filter-b.dataset.filter:b.dataset[k]-a.dataset[k]);
c.forEach(e=>g.appendChild(e));}
document.querySelectorAll('img[data-gif]').forEach(im=>{const png=im.src;
im.addEventListener('mouseenter',()=>{im.src=im.dataset.gif});
im.addEventListener('mouseleave',()=>{im.src=png});
im.addEventListener('click',()=>{im.src=im.src===png?im.dataset.gif:png});});"""


def layer_page(layer: str) -> str:
    return f'layer_{file_stem(layer)}.html'


def filter_page(layer: str, f: int) -> str:
    return f'filter_{file_stem(layer)}_{int(f)}.html'


def _doc(title: str, body: str, script: str = '') -> str:
    tail = f'<script>{script}</script>\n' if script else ''
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{CSS}</style></head>\n<body>\n{body}\n{tail}</body></html>\n')


def _num(x) -> str:
    return 'n/a' if x is None else f'{float(x):.4g}'


def _dead_fraction(rows) -> float:
    return sum(r['dead'] for r in rows) / max(1, len(rows))


def _rescued(rows) -> str:
    """How many were rescued; '?' where a record predates the field (a lucid chunk then was rescued
    without saying so)."""
    return '?' if any('rescued' not in r for r in rows) else str(sum(bool(r['rescued']) for r in rows))


def _best(rows, n):
    return sorted((r for r in rows if not r['dead']), key=lambda r: -r['loss'])[:n]


def index_page(info: dict, layers: list[dict]) -> str:
    w = info.get('weights', {})
    rows = []
    for entry in layers:
        fs = entry['filters']
        thumbs = ''.join(f'<a href="{filter_page(entry["layer"], r["filter"])}"><img src="{r["png"]}" alt="filter '
                         f'{r["filter"]}"></a>' for r in _best(fs, 6))
        rows.append(f'<tr><td><a href="{layer_page(entry["layer"])}">{html.escape(entry["layer"])}</a></td>'
                    f'<td>{len(fs)} of {entry.get("channels", len(fs))}</td><td>{_dead_fraction(fs):.0%}</td>'
                    f'<td>{_rescued(fs)}</td>'
                    f'<td class="thumbs">{thumbs}</td></tr>')
    body = (f'<h1>Atlas of {html.escape(str(info.get("model")))}</h1>\n'
            f'<p>Weights: <b>{html.escape(str(w.get("name")))}</b> ({html.escape(str(w.get("source")))}), sha256 '
            f'<code>{html.escape(str(w.get("sha256")))}</code></p>\n'
            '<table><tr><th>layer</th><th>filters</th><th>dead</th><th>rescued</th><th>best filters</th></tr>\n'
            + '\n'.join(rows) + '</table>\n<h2>Configuration</h2>\n<pre>'
            + html.escape(json.dumps(info.get('config', {}), indent=1, sort_keys=True)) + '</pre>\n<h2>Versions</h2>\n'
            '<pre>' + html.escape(json.dumps(info.get('environment', {}), indent=1, sort_keys=True)) + '</pre>')
    return _doc(f'atlas of {info.get("model")}', body)


def layer_html(info: dict, entry: dict) -> str:
    layer, fs = entry['layer'], entry['filters']
    cells = []
    for r in fs:
        cells.append(f'<div class="cell{" dead" if r["dead"] else ""}" data-filter="{r["filter"]}" '
                     f'data-loss="{r["loss"]}" data-selectivity="{r["selectivity"] or 0}">'
                     f'<img src="{r["png"]}" data-gif="{r["gif"]}" alt="filter {r["filter"]}" '
                     'title="hover or click: the filter forming"><br>'
                     f'<a href="{filter_page(layer, r["filter"])}">filter {r["filter"]}</a>'
                     f'{" (dead)" if r["dead"] else ""}{" (rescued)" if r.get("rescued") else ""}'
                     f'<br>objective {_num(r["loss"])}<br>'
                     f'selectivity {_num(r["selectivity"])}</div>')
    body = (f'<nav><a href="index.html">index</a></nav>\n<h1>{html.escape(layer)}</h1>\n'
            f'<p>{len(fs)} filters, {_dead_fraction(fs):.0%} dead, {_rescued(fs)} rescued. Sort by '
            '<button onclick="sortBy(\'loss\')">objective</button> '
            '<button onclick="sortBy(\'selectivity\')">selectivity</button> '
            '<button onclick="sortBy(\'filter\')">index</button></p>\n'
            '<div class="grid" id="grid">\n' + '\n'.join(cells) + '\n</div>')
    return _doc(f'{layer} - atlas of {info.get("model")}', body, SORT_JS)


def filter_html(info: dict, entry: dict, pos: int) -> str:
    layer, fs = entry['layer'], entry['filters']
    r = fs[pos]
    f = r['filter']
    links = ['<a href="index.html">index</a>', f'<a href="{layer_page(layer)}">{html.escape(layer)}</a>']
    if pos > 0:
        links.append(f'<a href="{filter_page(layer, fs[pos - 1]["filter"])}">previous</a>')
    if pos + 1 < len(fs):
        links.append(f'<a href="{filter_page(layer, fs[pos + 1]["filter"])}">next</a>')
    parts = [f'<nav>{" | ".join(links)}</nav>', f'<h1>{html.escape(layer)} filter {f}</h1>',
             f'<p>objective {_num(r["loss"])}, selectivity {_num(r["selectivity"])}'
             f'{", dead (its gradient is 0: the image cannot move)" if r["dead"] else ""}'
             f'{RESCUED_NOTE if r.get("rescued") else ""}</p>',
             f'<img class="big" src="{r["png"]}" alt="filter {f}"> '
             f'<img class="big" src="{r["gif"]}" alt="filter {f} forming">']
    div = entry.get('diverse', {}).get(f)
    if div:
        imgs = ''.join(f'<img src="{p}" alt="diverse {j}" title="activation {_num(a)}">'
                       for j, (p, a) in enumerate(zip(div['images'], div['activation'])))
        parts += [f'<h2>Diverse images</h2><p>diversity {_num(div["diversity"])}</p><div class="row">{imgs}</div>']
    else:
        parts += ['<h2>Diverse images</h2><p>not computed for this filter (see --diverse)</p>']
    ex = entry.get('examples', {}).get(f)
    if ex:
        imgs = ''.join(f'<img src="{e["png"]}" alt="example {j}" title="activation {_num(e["score"])}, '
                       f'{html.escape(str(e["photo"]))}">' for j, e in enumerate(ex))
        parts += [f'<h2>Dataset examples</h2><p>the crops of the photos that excite it most</p>'
                  f'<div class="row">{imgs}</div>']
    return _doc(f'{layer} filter {f} - atlas of {info.get("model")}', '\n'.join(parts))


def pages(info: dict, layers: list[dict]) -> dict[str, str]:
    """Every page of the site: ``{relative path: html}``."""
    out = {'index.html': index_page(info, layers)}
    for entry in layers:
        out[layer_page(entry['layer'])] = layer_html(info, entry)
        for pos in range(len(entry['filters'])):
            out[filter_page(entry['layer'], entry['filters'][pos]['filter'])] = filter_html(info, entry, pos)
    return out


def write_site(out: str, info: dict, layers: list[dict]) -> list[str]:
    """Write :func:`pages` under ``out`` (atomically, the umask's mode); returns the paths written."""
    written = []
    for rel, text in pages(info, layers).items():
        with atomic_path(os.path.join(out, rel)) as tmp:
            with open(tmp, 'w', encoding='utf-8') as fh:
                fh.write(text)
        written.append(rel)
    return written
