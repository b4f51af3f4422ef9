// Search on the static site: reads the sharded index under search/ (written by
// caixun/publish/static_search.py, whose docstring describes the format) with
// fetch, block by block from the newest articles, and shows results as the
// reader types. staticTerms and parseQuery must stay identical to the Python.
(function () {
  "use strict";

  var CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff";
  var HINT = "请至少输入两个汉字或一个英文/数字词";
  var MAX_QUERY_TERMS = 12;
  var PAGE = 20;
  var DEBOUNCE_MS = 150;

  function normalize(text) {
    return text.replace(/[\uff01-\uff5e\u3000]/g, function (c) {
      return c === "\u3000" ? " " : String.fromCharCode(c.charCodeAt(0) - 0xfee0);
    }).toUpperCase().toLowerCase();
  }

  function staticTerms(text) {
    var run = new RegExp("[" + CJK + "]+|[a-z0-9]+", "g");
    var found = [], seen = new Set(), previous = null, match;
    function add(term) {
      if (!seen.has(term)) { seen.add(term); found.push(term); }
    }
    text = normalize(text);
    while ((match = run.exec(text)) !== null) {
      var word = match[0];
      var adjacent = previous !== null && previous.end === match.index;
      if (word.charCodeAt(0) < 0x80) {
        if (adjacent) add(previous.word[previous.word.length - 1] + word);
        add(word);
      } else {
        if (adjacent) add(previous.word + word[0]);
        for (var i = 0; i + 1 < word.length; i++) add(word.substr(i, 2));
      }
      previous = { word: word, end: match.index + word.length };
    }
    return found;
  }

  function parseQuery(query) {
    var include = [], seen = new Set(), exclude = [], words = [];
    query.replace(/"/g, " ").split(/\s+/).forEach(function (word) {
      if (!word) return;
      var terms;
      if (word[0] === "-" && word.length > 1) {
        terms = staticTerms(word.slice(1));
        if (terms.length) exclude.push(terms.slice(0, MAX_QUERY_TERMS));
        return;
      }
      terms = staticTerms(word);
      if (terms.length) words.push(normalize(word));
      terms.forEach(function (term) {
        if (!seen.has(term)) { seen.add(term); include.push(term); }
      });
    });
    return { include: include.slice(0, MAX_QUERY_TERMS),
             exclude: exclude.slice(0, MAX_QUERY_TERMS), words: words };
  }

  var encoder = new TextEncoder(), decoder = new TextDecoder();

  function fnv1a32(term) {
    var bytes = encoder.encode(term), h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
    return h;
  }

  function readVarint(view, state) {
    var value = 0, shift = 0, byte;
    do {
      byte = view.getUint8(state.pos++);
      value += (byte & 0x7f) * Math.pow(2, shift);
      shift += 7;
    } while (byte & 0x80);
    return value;
  }

  function parseShard(buffer, wanted) {
    var view = new DataView(buffer), state = { pos: 0 }, found = new Map();
    while (state.pos < view.byteLength) {
      var length = readVarint(view, state);
      var term = decoder.decode(new Uint8Array(buffer, state.pos, length));
      state.pos += length;
      var tag = readVarint(view, state), kind = tag & 3, number = Math.floor(tag / 4);
      var payload = kind < 2 ? new Uint8Array(buffer, state.pos, number) : null;
      if (kind < 2) state.pos += number;
      if (wanted.has(term)) found.set(term, { kind: kind, number: number, payload: payload });
    }
    return found;
  }

  function decodePostings(kind, bytes) {
    var out = [];
    if (kind & 1) {
      for (var i = 0; i < bytes.length; i++) {
        for (var bit = 0; bit < 8; bit++) if (bytes[i] >> bit & 1) out.push(i * 8 + bit);
      }
      return out;
    }
    var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    var state = { pos: 0 }, value = 0;
    while (state.pos < bytes.length) {
      var step = readVarint(view, state);
      value = out.length ? value + step : step;
      out.push(value);
    }
    return out;
  }

  function Index(form) {
    this.base = form.getAttribute("data-base") || "";
    this.manifestUrl = form.getAttribute("data-index");
  }

  Index.prototype.fetch = function (path, version) {
    var url = this.base + "/search/" + path + (version ? "?v=" + version : "");
    return fetch(url, version ? {} : { cache: "no-cache" }).then(function (response) {
      if (!response.ok) throw new Error(response.status + " " + url);
      return response.arrayBuffer();
    });
  };

  Index.prototype.manifest = function () {
    return this.fetch("manifest.json", "").then(function (buffer) {
      return JSON.parse(decoder.decode(buffer));
    });
  };

  // The ids of one block matching the query, ascending (as static_search._block_ids).
  Index.prototype.blockIds = function (block, query) {
    var self = this, dir = block.level + "-" + block.k + "/", version = block.v;
    var every = query.include.concat.apply(query.include, query.exclude);
    var wanted = new Set(every), numbers = new Set();
    every.forEach(function (term) { numbers.add(fnv1a32(term) % block.shards); });
    var sorted = Array.from(numbers).sort(function (a, b) { return a - b; });
    var postingsCache = new Map();
    return Promise.all(sorted.map(function (number) {
      return self.fetch(dir + "s" + number + ".bin", version);
    })).then(function (buffers) {
      var found = new Map();
      buffers.forEach(function (buffer) {
        parseShard(buffer, wanted).forEach(function (entry, term) { found.set(term, entry); });
      });
      function postings(term) {
        var entry = found.get(term);
        if (entry.kind < 2) return Promise.resolve(new Set(decodePostings(entry.kind, entry.payload)));
        var name = dir + "t" + entry.number + ".bin";
        if (!postingsCache.has(name)) {
          postingsCache.set(name, self.fetch(name, version).then(function (buffer) {
            return new Set(decodePostings(entry.kind, new Uint8Array(buffer)));
          }));
        }
        return postingsCache.get(name);
      }
      function intersect(terms) {
        return Promise.all(terms.map(postings)).then(function (sets) {
          var ids = sets[0];
          sets.slice(1).forEach(function (set) {
            ids = new Set(Array.from(ids).filter(function (id) { return set.has(id); }));
          });
          return ids;
        });
      }
      if (!query.include.every(function (term) { return found.has(term); })) return [];
      return intersect(query.include).then(function (ids) {
        var groups = query.exclude.filter(function (group) {
          return ids.size && group.every(function (term) { return found.has(term); });
        });
        return Promise.all(groups.map(intersect)).then(function (excluded) {
          excluded.forEach(function (set) { set.forEach(function (id) { ids.delete(id); }); });
          return Array.from(ids, function (r) { return block.lo + r; })
            .sort(function (a, b) { return a - b; });
        });
      });
    });
  };

  // A query's run: pages of results, newest first, continuing into older blocks.
  function Session(index, manifest, query) {
    this.index = index;
    this.manifest = manifest;
    this.query = query;
    this.next = 0;
    this.pending = [];
    this.found = 0;
  }

  Session.prototype.done = function () {
    return !this.pending.length && this.next >= this.manifest.blocks.length;
  };

  Session.prototype.page = function (limit) {
    var self = this;
    if (self.pending.length >= limit || self.next >= self.manifest.blocks.length) {
      var shown = self.pending.splice(0, limit);
      return self.docs(shown).then(function (docs) {
        return shown.map(function (id) { return { id: id, meta: docs.get(id) }; });
      });
    }
    return self.index.blockIds(self.manifest.blocks[self.next++], self.query).then(function (ids) {
      self.found += ids.length;
      self.pending = self.pending.concat(ids.reverse());
      return self.page(limit);
    });
  };

  Session.prototype.docs = function (ids) {
    var self = this, size = self.manifest.docs_per_chunk, chunks = new Map();
    ids.forEach(function (id) {
      var block = self.manifest.blocks.find(function (b) { return b.lo <= id && id <= b.hi; });
      var path = block.level + "-" + block.k + "/d" + Math.floor((id - block.lo) / size) + ".json";
      if (!chunks.has(path)) chunks.set(path, block.v);
    });
    var docs = new Map();
    return Promise.all(Array.from(chunks, function (entry) {
      return self.index.fetch(entry[0], entry[1]).then(function (buffer) {
        var chunk = JSON.parse(decoder.decode(buffer));
        Object.keys(chunk).forEach(function (key) { docs.set(Number(key), chunk[key]); });
      });
    })).then(function () { return docs; });
  };

  // -- the page ----------------------------------------------------------------------

  function highlighted(title, words) {
    var fragment = document.createDocumentFragment();
    var folded = normalize(title), marks = [];
    for (var n = 0; n < title.length; n++) marks.push(false);
    if (folded.length === title.length) {
      words.forEach(function (word) {
        for (var i = folded.indexOf(word); word && i >= 0; i = folded.indexOf(word, i + word.length)) {
          for (var j = i; j < i + word.length; j++) marks[j] = true;
        }
      });
    }
    for (var start = 0; start < title.length;) {
      var end = start;
      while (end < title.length && marks[end] === marks[start]) end++;
      var text = document.createTextNode(title.slice(start, end));
      if (marks[start]) {
        var mark = document.createElement("mark");
        mark.appendChild(text);
        fragment.appendChild(mark);
      } else {
        fragment.appendChild(text);
      }
      start = end;
    }
    return fragment;
  }

  function item(base, result, words) {
    var li = document.createElement("li");
    var meta = result.meta || ["#" + result.id, "", "", ""];
    var time = document.createElement("time");
    time.textContent = meta[3];
    var link = document.createElement("a");
    link.href = base + "/" + meta[1];
    link.appendChild(highlighted(meta[0], words));
    var outlet = document.createElement("span");
    outlet.className = "outlet";
    outlet.textContent = meta[2];
    li.appendChild(time);
    li.appendChild(link);
    li.appendChild(outlet);
    return li;
  }

  function start() {
    var form = document.getElementById("search-form");
    if (!form) return;
    var input = document.getElementById("search-q");
    var status = document.getElementById("search-status");
    var list = document.getElementById("search-results");
    var more = document.getElementById("search-more");
    var index = new Index(form);
    var generation = 0, timer = 0, session = null, shown = 0;

    function report() {
      var found = session.found + (session.done() ? "" : "+");
      status.textContent = shown ? "找到 " + found + " 条结果，显示 " + shown + " 条" : "没有找到结果";
      more.hidden = session.done();
    }

    function showPage(current) {
      more.disabled = true;
      return session.page(PAGE).then(function (results) {
        if (current !== generation) return;  // a newer query took over
        results.forEach(function (result) {
          list.appendChild(item(index.base, result, session.query.words));
        });
        shown += results.length;
        more.disabled = false;
        report();
      });
    }

    function run(text) {
      var current = ++generation;
      var query = parseQuery(text);
      var url = new URL(location.href);
      if (text.trim()) url.searchParams.set("q", text); else url.searchParams.delete("q");
      history.replaceState(null, "", url);
      list.textContent = "";
      more.hidden = true;
      shown = 0;
      if (!text.trim()) { status.textContent = ""; return; }
      if (!query.include.length) { status.textContent = HINT; return; }
      status.textContent = "搜索中…";
      index.manifest().then(function (manifest) {
        if (current !== generation) return;
        session = new Session(index, manifest, query);
        return showPage(current);
      }).catch(function (error) {
        if (current === generation) status.textContent = "搜索出错：" + error.message;
      });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { run(input.value); }, DEBOUNCE_MS);
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clearTimeout(timer);
      run(input.value);
    });
    more.addEventListener("click", function () {
      var current = generation;
      showPage(current).catch(function (error) {
        if (current === generation) status.textContent = "搜索出错：" + error.message;
      });
    });
    var initial = new URLSearchParams(location.search).get("q");
    if (initial) {
      input.value = initial;
      run(initial);
    }
  }

  window.caixunSearch = { staticTerms: staticTerms, parseQuery: parseQuery, fnv1a32: fnv1a32 };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
