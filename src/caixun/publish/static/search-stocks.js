// On a site with securities: the search page also finds a security by its code
// (as caixun.securities.from_native reads one: 600519, sh600519, 1.600519,
// 600519.SH, 00700, hk00700, or a bare US ticker such as AAPL) or by a spelling
// of its name (compared folded: NFKC, no spaces, upper case), from
// search/codes.json, and links its page above the text results, which
// search.js still shows as before. resolve must stay identical to
// caixun.publish.static_search.resolve_stocks.
(function () {
  "use strict";

  var MAX_STOCK_HITS = 5;
  var DEBOUNCE_MS = 150;
  // Python's str.isspace() characters (NFKC already made most of them a space).
  var SPACES = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;

  function fold(text) {
    return text.normalize("NFKC").replace(SPACES, "").toUpperCase();
  }

  var SH = ["600", "601", "603", "605", "688", "689", "900"];
  var SZ = ["000", "001", "002", "003", "004", "300", "301", "302", "200", "201"];
  var BJ = ["430", "830", "831", "832", "833", "834", "835", "836", "837", "838", "839",
            "870", "871", "872", "873", "920"];

  function startsWithAny(code, prefixes) {
    return prefixes.some(function (prefix) { return code.slice(0, 3) === prefix; });
  }

  function aShareMarket(code) {
    if (!/^[0-9]{6}$/.test(code)) return null;
    if (startsWithAny(code, SH)) return "SH";
    if (startsWithAny(code, SZ)) return "SZ";
    if (startsWithAny(code, BJ)) return "BJ";
    return null;
  }

  function canonicalCode(code, market) {
    // The input is folded: no white space to strip (trim() would also strip U+FEFF).
    code = code.toUpperCase();
    market = market.toUpperCase();
    if (market === "SH" || market === "SZ" || market === "BJ") {
      return aShareMarket(code) === market ? code + "." + market : null;
    }
    if (market === "HK") {
      if (/^[0-9]{1,5}$/.test(code) && Number(code)) return ("00000" + code).slice(-5) + ".HK";
      return null;
    }
    if (market === "US") {
      if (/^[A-Z][A-Z0-9]{0,5}(?:[.\-_][A-Z]{1,2})?$/.test(code)) return code.replace("_", ".") + ".US";
      return null;
    }
    return null;
  }

  function fromEastmoney(secid) {
    var dot = secid.indexOf(".");
    if (dot < 0) return null;
    var marketId = secid.slice(0, dot), code = secid.slice(dot + 1);
    if (marketId === "1") return canonicalCode(code, "SH");
    if (marketId === "0") {
      var market = aShareMarket(code);
      return market === "SZ" || market === "BJ" ? canonicalCode(code, market) : null;
    }
    if (marketId === "116" || marketId === "128") return canonicalCode(code, "HK");
    if (marketId === "105" || marketId === "106" || marketId === "107") return canonicalCode(code, "US");
    return null;
  }

  var PREFIXED = /^(?:(sh|sz|bj)([0-9]{6})|(hk)([0-9]{4,5})|(?:us|gb_)([a-z][a-z0-9.]{0,7}))$/i;
  var CANONICAL = /^([0-9A-Z.\-]{1,8})\.(SH|SZ|BJ|HK|US|SS)$/i;

  function fromNative(value) {
    var match;
    if (/^[0-9]{1,3}\.[0-9A-Za-z.]+$/.test(value)) return fromEastmoney(value);
    if ((match = CANONICAL.exec(value))) {
      var market = match[2].toUpperCase();
      return canonicalCode(match[1], market === "SS" ? "SH" : market);
    }
    if ((match = PREFIXED.exec(value))) {
      if (match[1]) return canonicalCode(match[2], match[1]);
      if (match[3]) return canonicalCode(match[4], "HK");
      return canonicalCode(match[5], "US");
    }
    if (/^[0-9]+$/.test(value)) {
      if (value.length === 6) {
        var a = aShareMarket(value);
        return a ? canonicalCode(value, a) : null;
      }
      if (value.length === 5) return canonicalCode(value, "HK");
    }
    return null;
  }

  // The securities a query names: by code, else by a spelling equal after folding.
  function resolve(query, stocks) {
    var folded = fold(query);
    if (!folded) return [];
    var code = fromNative(folded) || canonicalCode(folded, "US");
    var hits = code ? stocks.filter(function (s) { return s.code === code; }) : [];
    if (!hits.length) {
      hits = stocks.filter(function (s) {
        return [s.name].concat(s.names || []).some(function (n) { return fold(n) === folded; });
      });
    }
    return hits.slice(0, MAX_STOCK_HITS);
  }

  function start() {
    var form = document.getElementById("search-form");
    var slot = document.getElementById("search-stocks");
    var url = form && form.getAttribute("data-stocks");
    if (!form || !slot || !url) return;
    var input = document.getElementById("search-q");
    var loaded = null, generation = 0, timer = 0;

    function stocks() {
      if (!loaded) {
        loaded = fetch(url, { cache: "no-cache" }).then(function (response) {
          if (!response.ok) return [];  // an older build without the file: no links
          return response.json().then(function (data) { return data.stocks || []; });
        }).catch(function () { return []; });
      }
      return loaded;
    }

    function link(stock) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = stock.url;
      a.className = "stock-hit";
      a.textContent = (stock.name ? stock.name + " " : "") + stock.code + " · " + stock.articles + " 篇";
      li.appendChild(a);
      return li;
    }

    function run(text) {
      var current = ++generation;
      slot.textContent = "";
      // Only the queries search.js runs (search_static reads the file for the same ones).
      if (!text.trim() || !window.caixunSearch ||
          !window.caixunSearch.parseQuery(text).include.length) return;
      stocks().then(function (all) {
        if (current !== generation) return;
        resolve(text, all).forEach(function (stock) { slot.appendChild(link(stock)); });
      });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { run(input.value); }, DEBOUNCE_MS);
    });
    form.addEventListener("submit", function () {
      clearTimeout(timer);
      run(input.value);
    });
    var initial = new URLSearchParams(location.search).get("q");
    if (initial) run(initial);
  }

  window.caixunStocks = { fold: fold, fromNative: fromNative, resolve: resolve };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
