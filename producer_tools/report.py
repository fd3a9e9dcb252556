"""One self-contained HTML page to review verdicts: a contact sheet with filters.

Why a static page: operators and sellers' support staff open it from a ticket or an e-mail,
often offline; so CSS, script and thumbnails (data: URIs) are all inline, nothing is fetched.
Cards are rendered server-side (the page is readable without script); the script only
filters, sorts and shows an image's signals on click.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from PIL import Image

THUMB_PX = 200


@dataclass
class Card:
    """One image on the sheet. `before` (policy diff) holds the verdict under the old policy."""

    key: str
    title: str
    score: float
    decision: str
    reasons: list[dict[str, Any]] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    thumb: str | None = None
    profile: str | None = None
    before: dict[str, Any] | None = None


def thumbnail_uri(data: bytes, px: int = THUMB_PX) -> str | None:
    """JPEG data: URI of a small thumbnail, or None when the bytes are not a readable image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (px, px))
            im.thumbnail((px, px))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=80)
    except Exception:  # whatever the decoder raises, the card just shows no picture
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def card_from_scored(body: dict[str, Any], thumb: str | None = None) -> Card:
    """A card from an image_scored event body."""
    return Card(key=str(body.get("event_id") or body.get("image_id")), title=str(body.get("image_id", "?")),
                score=float(body.get("score", 0.0)), decision=str(body.get("decision", "?")),
                reasons=list(body.get("reasons") or []), signals=dict(body.get("signals") or {}), thumb=thumb,
                profile=(body.get("policy") or {}).get("name"))


_CSS = """
body{font:14px system-ui,sans-serif;margin:0;background:#f4f4f6;color:#222}
header{background:#fff;padding:12px 20px;border-bottom:1px solid #ddd;position:sticky;top:0;z-index:2}
h1{font-size:18px;margin:0 0 4px}.sub{color:#666;margin:0 0 8px}
.summary span{display:inline-block;margin-right:14px}.controls{margin-top:8px}
.controls button{margin:2px;border:1px solid #bbb;background:#fafafa;border-radius:12px;padding:2px 10px;cursor:pointer}
.controls button.on{background:#222;color:#fff;border-color:#222}
#sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px;padding:16px 20px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;overflow:hidden;cursor:pointer;border-top:5px solid #999}
.card.accept{border-top-color:#2e7d32}.card.demote{border-top-color:#f9a825}.card.reject{border-top-color:#c62828}
.card .img{height:160px;display:flex;align-items:center;justify-content:center;background:#eee}
.card img{max-width:100%;max-height:160px}.card .noimg{color:#888;font-size:12px}
.card .body{padding:8px 10px}.card .t{font-weight:600;word-break:break-all}
.badge{display:inline-block;border-radius:4px;padding:0 6px;color:#fff;font-size:12px;margin-right:6px}
.badge.accept{background:#2e7d32}.badge.demote{background:#f9a825;color:#222}.badge.reject{background:#c62828}
.codes code{display:inline-block;background:#eef;border-radius:3px;padding:0 4px;margin:2px 2px 0 0;font-size:11px}
.was{font-size:12px;color:#555}
#detail{position:fixed;right:0;top:0;bottom:0;width:380px;background:#fff;box-shadow:-2px 0 8px #0003;padding:16px;overflow:auto;z-index:3}
#detail[hidden]{display:none}#detail table{border-collapse:collapse;width:100%}
#detail td{border-bottom:1px solid #eee;padding:2px 4px;font-size:12px}#detail li{margin-bottom:6px}
"""

_JS = """
(function(){
  var cards=[].slice.call(document.querySelectorAll('.card'));
  var state={decision:null,reason:null};
  function apply(){
    var shown=0;
    cards.forEach(function(c){
      var ok=(!state.decision||c.dataset.decision===state.decision)&&
             (!state.reason||(' '+c.dataset.reasons+' ').indexOf(' '+state.reason+' ')>=0);
      c.hidden=!ok; if(ok) shown++;
    });
    document.getElementById('shown').textContent=shown;
    document.querySelectorAll('[data-filter]').forEach(function(b){
      b.classList.toggle('on',state[b.dataset.filter]===b.dataset.value);
    });
  }
  document.querySelectorAll('[data-filter]').forEach(function(b){
    b.addEventListener('click',function(){
      var k=b.dataset.filter,v=b.dataset.value; state[k]=(state[k]===v)?null:v; apply();
    });
  });
  document.getElementById('clear').addEventListener('click',function(){state.decision=null;state.reason=null;apply();});
  document.getElementById('sort').addEventListener('change',function(e){
    var dir=e.target.value, sheet=document.getElementById('sheet');
    var sorted=cards.slice().sort(function(a,b){
      if(dir==='input') return a.dataset.index-b.dataset.index;
      var d=parseFloat(a.dataset.score)-parseFloat(b.dataset.score); return dir==='asc'?d:-d;
    });
    sorted.forEach(function(c){sheet.appendChild(c);});
  });
  var detail=document.getElementById('detail'), data=JSON.parse(document.getElementById('card-data').textContent);
  function esc(s){return String(s).replace(/[&<>"]/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});}
  cards.forEach(function(c){
    c.addEventListener('click',function(){
      var d=data[c.dataset.index], rows=Object.keys(d.signals).sort().map(function(k){
        return '<tr><td>'+esc(k)+'</td><td>'+esc(d.signals[k])+'</td></tr>';}).join('');
      var reasons=d.reasons.map(function(r){return '<li><code>'+esc(r.code)+'</code> '+esc(r.message)+'</li>';}).join('');
      detail.innerHTML='<button id="close">close</button><h2>'+esc(d.title)+'</h2><p>'+esc(d.decision)+
        ', score '+esc(d.score)+(d.profile?', profile '+esc(d.profile):'')+'</p><ul>'+(reasons||'<li>no reasons</li>')+
        '</ul><table id="signals">'+(rows||'<tr><td>no signals</td></tr>')+'</table>';
      detail.hidden=false;
      document.getElementById('close').addEventListener('click',function(ev){ev.stopPropagation();detail.hidden=true;});
    });
  });
  apply();
})();
"""


def _card_html(i: int, c: Card) -> str:
    e = html.escape
    codes = [str(r.get("code")) for r in c.reasons]
    img = f'<img alt="{e(c.title)}" src="{c.thumb}">' if c.thumb else '<span class="noimg">no thumbnail</span>'
    was = ""
    if c.before is not None:
        was = (f'<div class="was">was {e(str(c.before.get("decision")))}'
               f' ({e(", ".join(str(r.get("code")) for r in c.before.get("reasons", [])) or "no reasons")})</div>')
    return (f'<div class="card {e(c.decision)}" data-index="{i}" data-decision="{e(c.decision)}" '
            f'data-reasons="{e(" ".join(codes))}" data-score="{c.score:.2f}">'
            f'<div class="img">{img}</div><div class="body"><div class="t">{e(c.title)}</div>'
            f'<span class="badge {e(c.decision)}">{e(c.decision)}</span>{c.score:.1f}'
            f'<div class="codes">{"".join(f"<code>{e(x)}</code>" for x in codes)}</div>{was}</div></div>')


def render(cards: Iterable[Card], title: str, subtitle: str = "") -> str:
    """The whole page as one string (write it anywhere; it needs nothing else)."""
    cards = list(cards)
    e = html.escape
    decisions = Counter(c.decision for c in cards)
    reasons = Counter(str(r.get("code")) for c in cards for r in c.reasons)
    summary = "".join(f'<span><b>{decisions.get(d, 0)}</b> {d}</span>' for d in ("accept", "demote", "reject"))
    dbuttons = "".join(f'<button data-filter="decision" data-value="{d}">{d} ({decisions.get(d, 0)})</button>'
                       for d in ("accept", "demote", "reject"))
    rbuttons = "".join(f'<button data-filter="reason" data-value="{e(k)}">{e(k)} ({n})</button>'
                       for k, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    data = [{"title": c.title, "score": c.score, "decision": c.decision, "profile": c.profile,
             "reasons": c.reasons, "signals": c.signals} for c in cards]
    data_json = json.dumps(data).replace("</", "<\\/")  # no early </script> from an image id
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{e(title)}</h1><p class="sub">{e(subtitle)}</p>
<div class="summary"><span><b>{len(cards)}</b> images</span>{summary}<span><b id="shown">{len(cards)}</b> shown</span></div>
<div class="controls">decision: {dbuttons}<br>reason: {rbuttons or "none"}<br>
sort: <select id="sort"><option value="input">as listed</option><option value="asc">score, lowest first</option>
<option value="desc">score, highest first</option></select> <button id="clear">clear filters</button></div></header>
<main id="sheet">{"".join(_card_html(i, c) for i, c in enumerate(cards))}</main>
<aside id="detail" hidden></aside>
<script type="application/json" id="card-data">{data_json}</script>
<script>{_JS}</script></body></html>
"""
