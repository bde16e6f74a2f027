/*
 * picture.js: the reporting page. Reads ?period=&at=&from=&to=&area=&figure=
 * &version= from its own URL, fetches GET /v1/places and GET /v1/picture (or
 * GET /v1/versions/{id} for a frozen version) and draws the picture: key
 * figures, an SVG map of the places shaded by the chosen figure, SVG charts
 * of the trend, response times against their targets, walk findings and the
 * survey beside the reports, with tables of the numbers. Every number shown
 * carries data-figure="<JSON path>" (array indexes as path segments) so a
 * test can compare it with the JSON. No framework, nothing fetched from
 * anywhere but this service. A staff or police key given as #key= is kept in
 * sessionStorage and sent as a Bearer token; with it, comments are editable
 * (PUT /v1/comments) and a version can be published (POST /v1/versions).
 */
(function () {
	"use strict";

	var KEY_STORE = "trygg.reporting.key";
	var SVGNS = "http://www.w3.org/2000/svg";
	var NBSP = "\u00a0";

	var state = {
		key: null,
		places: [],     /* [{slug, name, kind, geometry}] */
		picture: null,
		query: null,    /* {period, at, from, to, area, figure, version} */
		loadSeq: 0,
		mapPicture: null, /* the district's picture for the map (the picture itself at district level) */
		surveyPlaces: {} /* survey area slug -> the slugs of the places in it */
	};

	/* ---- formatting: mirrored by tests/integration/test_reporting_page.py ---- */

	function fmtInt(n) {
		var s = String(Math.abs(Math.round(n)));
		s = s.replace(/\B(?=(\d{3})+(?!\d))/g, NBSP);
		return (n < 0 ? "\u2212" : "") + s;
	}
	function fmtDec(x, d) {
		return x.toFixed(d).replace(".", ",").replace("-", "\u2212");
	}
	function fmtShare(x) {
		return Math.round(x * 100) + NBSP + "%";
	}
	function fmtMinutes(m) {
		if (m < 60)
			return Math.round(m) + NBSP + "min";
		var h = m / 60;
		if (h < 10)
			return fmtDec(h, 1) + NBSP + "h";
		if (h < 72)
			return fmtInt(h) + NBSP + "h";
		return fmtDec(h / 24, 1) + NBSP + "d";
	}
	function fmtPercentValue(x) {
		var s = fmtDec(x, 1);
		return s.replace(/,0$/, "") + NBSP + "%";
	}
	/* One value by its format name; null shows "<5" when suppressed. */
	function fmt(kind, v, suppressed) {
		if (v === null || v === undefined)
			return suppressed ? "<5" : "\u2013";
		switch (kind) {
		case "count": return fmtInt(v);
		case "share": return fmtShare(v);
		case "minutes": return fmtMinutes(v);
		case "percent": return fmtPercentValue(v);
		case "score": return fmtDec(v, 1);
		default: return String(v);
		}
	}

	/* ---- small DOM helpers (text only: never innerHTML with data) ---- */

	function el(tag, attrs) {
		var e = document.createElement(tag);
		setAttrs(e, attrs);
		for (var i = 2; i < arguments.length; i++)
			append(e, arguments[i]);
		return e;
	}
	function sv(tag, attrs) {
		var e = document.createElementNS(SVGNS, tag);
		setAttrs(e, attrs);
		for (var i = 2; i < arguments.length; i++)
			append(e, arguments[i]);
		return e;
	}
	function setAttrs(e, attrs) {
		if (!attrs)
			return;
		Object.keys(attrs).forEach(function (k) {
			var v = attrs[k];
			if (v === null || v === undefined || v === false)
				return;
			if (k === "text")
				e.textContent = v;
			else if (k.slice(0, 2) === "on")
				e.addEventListener(k.slice(2), v);
			else
				e.setAttribute(k, v === true ? "" : String(v));
		});
	}
	function append(e, c) {
		if (c === null || c === undefined || c === false)
			return;
		if (Array.isArray(c))
			c.forEach(function (x) { append(e, x); });
		else if (typeof c === "string" || typeof c === "number")
			e.appendChild(document.createTextNode(String(c)));
		else
			e.appendChild(c);
	}
	function $(id) { return document.getElementById(id); }
	function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

	/* A number element: its text formatted, its JSON path in data-figure. */
	function fig(path, kind, v, suppressed, tag) {
		return el(tag || "span", {
			"class": "num" + ((v === null || v === undefined) && suppressed ? " suppressed" : ""),
			"data-figure": path,
			"data-format": kind,
			"title": (v === null || v === undefined) && suppressed ?
			    "Färre än 5 eller går att räkna ut: dolt i den publika vyn" : null,
			text: fmt(kind, v, suppressed)
		});
	}
	/* A count object C = {value, previous, last_year, suppressed}. */
	function cnt(c) { return c && typeof c === "object" ? c : {value: c === undefined ? null : c}; }
	function cval(c) { c = cnt(c); return c.value === undefined ? null : c.value; }
	function countFig(path, c, part) {
		c = cnt(c);
		part = part || "value";
		return fig(path + "." + part, "count", c[part] === undefined ? null : c[part], !!c.suppressed);
	}

	/* Trend arrow of a count against one of its comparison values. */
	function arrow(c, part, label) {
		c = cnt(c);
		var now = c.value, then = c[part];
		if (now === null || now === undefined || then === null || then === undefined)
			return el("span", {"class": "arrow none", title: label + ": ingen jämförelse", text: "\u00b7"});
		var diff = now - then, cls, sym, txt;
		if (diff > 0) { cls = "up"; sym = "\u25b2"; }
		else if (diff < 0) { cls = "down"; sym = "\u25bc"; }
		else { cls = "flat"; sym = "\u25b6"; }
		if (then === 0)
			txt = diff === 0 ? "\u00b10" : "+" + fmtInt(diff);
		else
			txt = (diff > 0 ? "+" : diff < 0 ? "\u2212" : "\u00b1") + Math.round(Math.abs(diff) * 100 / then) + NBSP + "%";
		return el("span", {"class": "arrow " + cls, "aria-label": label + " " + txt, title: label}, sym + NBSP + txt);
	}

	/* ---- dates and periods ---- */

	function pad(n) { return (n < 10 ? "0" : "") + n; }
	function ymd(d) { return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()); }
	function parseYmd(s) {
		var m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s || "");
		return m ? new Date(+m[1], +m[2] - 1, +m[3]) : null;
	}
	function today() { var d = new Date(); return new Date(d.getFullYear(), d.getMonth(), d.getDate()); }
	function addMonths(d, n) { return new Date(d.getFullYear(), d.getMonth() + n, 1); }
	function quarterStart(d) { return new Date(d.getFullYear(), Math.floor(d.getMonth() / 3) * 3, 1); }
	var MONTHS = ["januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti",
	    "september", "oktober", "november", "december"];
	var MONTHS_SHORT = ["jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec"];

	function fmtDate(s) {
		var d = parseYmd(String(s || "").slice(0, 10));
		return d ? d.getDate() + " " + MONTHS[d.getMonth()] + " " + d.getFullYear() : String(s || "");
	}
	function fmtDateTime(s) {
		var d = new Date(s);
		if (isNaN(d.getTime()))
			return String(s || "");
		return d.getDate() + " " + MONTHS[d.getMonth()] + " " + d.getFullYear() + " " +
		    pad(d.getHours()) + ":" + pad(d.getMinutes());
	}
	function periodLabel(p) {
		if (!p)
			return "";
		var from = parseYmd(p.from), to = parseYmd(p.to);
		var kind = p.kind;
		if (from && kind === "month")
			return MONTHS[from.getMonth()].replace(/^./, function (c) { return c.toUpperCase(); }) + " " + from.getFullYear();
		if (from && kind === "quarter")
			return "Kvartal " + (Math.floor(from.getMonth() / 3) + 1) + " " + from.getFullYear();
		if (from && kind === "year")
			return "År " + from.getFullYear();
		if (from && to) {
			var last = new Date(to.getFullYear(), to.getMonth(), to.getDate() - 1);
			return fmtDate(p.from) + " \u2013 " + fmtDate(ymd(last));
		}
		return p.label || "";
	}

	/* ---- URL state ---- */

	function readQuery() {
		var u = new URLSearchParams(location.search);
		var q = {
			period: u.get("period") || "quarter",
			at: u.get("at") || "",
			from: u.get("from") || "",
			to: u.get("to") || "",
			area: u.get("area") || "district",
			figure: u.get("figure") || "reports",
			version: u.get("version") || ""
		};
		if (["month", "quarter", "year", "custom"].indexOf(q.period) < 0)
			q.period = "quarter";
		return q;
	}
	/* The query the service understands (no page-only parameters). */
	function apiQuery(q) {
		var u = new URLSearchParams();
		u.set("period", q.period);
		if (q.period === "custom") {
			if (q.from) u.set("from", q.from);
			if (q.to) u.set("to", q.to);
		} else if (q.at) {
			u.set("at", q.at);
		}
		u.set("area", q.area);
		return u.toString();
	}
	function pageQuery(q) {
		var s = apiQuery(q);
		if (q.figure && q.figure !== "reports")
			s += "&figure=" + encodeURIComponent(q.figure);
		if (q.version)
			s += "&version=" + encodeURIComponent(q.version);
		return s;
	}
	function navigate(q) {
		state.query = q;
		history.pushState(null, "", "?" + pageQuery(q));
		load();
	}

	/* ---- the service ---- */

	function takeKey() {
		var m = /(?:^|[#&])key=([^&]+)/.exec(location.hash);
		if (m) {
			try { sessionStorage.setItem(KEY_STORE, decodeURIComponent(m[1])); } catch (e) { /* private mode */ }
			/* Keep the key out of the address bar, history and printouts. */
			history.replaceState(null, "", location.pathname + location.search);
		}
		try { state.key = sessionStorage.getItem(KEY_STORE); } catch (e) { state.key = null; }
	}
	function api(method, path, body) {
		var h = {"Accept": "application/json"};
		if (state.key)
			h["Authorization"] = "Bearer " + state.key;
		if (body !== undefined)
			h["Content-Type"] = "application/json";
		return fetch(path, {method: method, headers: h, body: body === undefined ? undefined : JSON.stringify(body)})
		    .then(function (r) {
			    return r.text().then(function (t) {
				    var j = null;
				    try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; }
				    if (!r.ok) {
					    var msg = j && j.error && j.error.message ? j.error.message : "HTTP " + r.status;
					    var err = new Error(msg);
					    err.status = r.status;
					    throw err;
				    }
				    return j;
			    });
		    });
	}
	/* GET /v1/places: a FeatureCollection or {"places":[...]} or [...]. */
	function normPlaces(j) {
		var list = [];
		if (j && Array.isArray(j.features))
			list = j.features.map(function (f) {
				var p = f.properties || {};
				return {slug: p.slug, name: p.name, kind: p.kind || "place", geometry: f.geometry};
			});
		else if (j && Array.isArray(j.places))
			list = j.places;
		else if (Array.isArray(j))
			list = j;
		return list.filter(function (p) { return p && p.slug && p.geometry; });
	}

	function setStatus(text, isError) {
		var s = $("status");
		s.textContent = text || "";
		s.className = "status no-print" + (isError ? " error" : "");
		s.hidden = !text;
	}

	function load() {
		var q = state.query, seq = ++state.loadSeq;
		setStatus("Laddar…");
		document.body.setAttribute("data-loaded", "loading");
		syncControls(q);
		var picP = q.version ?
		    api("GET", "/v1/versions/" + encodeURIComponent(q.version)) :
		    api("GET", "/v1/picture?" + apiQuery(q));
		var placesP = state.places.length ? Promise.resolve(null) : api("GET", "/v1/places");
		Promise.all([picP, placesP]).then(function (res) {
			if (seq !== state.loadSeq)
				return;
			if (res[1])
				state.places = normPlaces(res[1]);
			var pic = res[0] && res[0].picture && !res[0].totals ? res[0].picture : res[0];
			if (res[0] && res[0].picture && res[0].version && !pic.version)
				pic.version = res[0].version;
			if (res[0] && res[0].picture && res[0].comments && !pic.comments)
				pic.comments = res[0].comments;
			state.picture = pic;
			state.mapPicture = pic;
			/* The map shows the whole district for the period, whatever
			 * the area: ask for the district's picture as well. */
			var mapP = q.version || !pic.area || pic.area.kind === "district" ? Promise.resolve(pic) :
			    api("GET", "/v1/picture?" + apiQuery(Object.assign({}, q, {area: "district"})))
				.catch(function () { return pic; });
			return mapP.then(function (mp) {
				state.mapPicture = mp;
				return learnSurveyPlaces();
			}).then(function () {
				if (seq !== state.loadSeq)
					return;
				render();
				setStatus("");
				document.body.setAttribute("data-loaded", "true");
			});
		}).catch(function (e) {
			if (seq !== state.loadSeq)
				return;
			setStatus("Kunde inte hämta trygghetsbilden: " + e.message, true);
			document.body.setAttribute("data-loaded", "error");
		});
		loadVersions();
	}

	/* ---- controls ---- */

	function syncControls(q) {
		$("period").value = q.period;
		$("at").value = q.at;
		$("from").value = q.from;
		$("to").value = q.to;
		$("figure").value = q.figure;
		document.body.classList.toggle("custom", q.period === "custom");
		fillAreas();
		var dl = apiQuery(q);
		$("dl-csv").href = "/v1/picture.csv?" + dl;
		$("dl-geojson").href = "/v1/picture.geojson?" + dl;
	}
	function fillAreas() {
		var sel = $("area"), q = state.query, pic = state.picture;
		clear(sel);
		sel.appendChild(el("option", {value: "district", text: "Hela stadsdelen"}));
		var places = state.places.filter(function (p) { return p.kind !== "district"; });
		if (places.length) {
			var g = el("optgroup", {label: "Platser"});
			places.slice().sort(function (a, b) { return a.name.localeCompare(b.name, "sv"); })
			    .forEach(function (p) { g.appendChild(el("option", {value: "place:" + p.slug, text: p.name})); });
			sel.appendChild(g);
		}
		var surveys = pic && Array.isArray(pic.survey) ? pic.survey : [];
		if (surveys.length) {
			var g2 = el("optgroup", {label: "Trygghetsmätningens områden"});
			var seen = {};
			surveys.forEach(function (s) {
				if (seen[s.area]) return;
				seen[s.area] = true;
				g2.appendChild(el("option", {value: "survey:" + s.area, text: s.name || s.area}));
			});
			sel.appendChild(g2);
		}
		if (!Array.prototype.some.call(sel.options, function (o) { return o.value === q.area; }))
			sel.appendChild(el("option", {value: q.area, text: q.area}));
		sel.value = q.area;
	}
	/* The picture names survey areas but not their places; the picture of
	 * each survey area lists them (by_place: places whose centroid lies in
	 * it). Asked once per survey area, only when the map shows a survey
	 * indicator. */
	function learnSurveyPlaces() {
		var q = state.query, pic = state.picture;
		if (!pic || q.figure.slice(0, 7) !== "survey:")
			return Promise.resolve();
		var todo = (pic.survey || []).map(function (s) { return s.area; })
		    .filter(function (a, i, all) { return a && all.indexOf(a) === i && !state.surveyPlaces[a]; });
		return Promise.all(todo.map(function (a) {
			var sq = Object.assign({}, q, {area: "survey:" + a});
			return api("GET", "/v1/picture?" + apiQuery(sq)).then(function (j) {
				state.surveyPlaces[a] = (j.by_place || []).map(function (p) { return p.place; });
			}).catch(function () { state.surveyPlaces[a] = []; });
		}));
	}
	function fillFigures() {
		var sel = $("figure"), pic = state.picture, keep = state.query.figure;
		Array.prototype.slice.call(sel.querySelectorAll("option[data-survey]")).forEach(function (o) { sel.removeChild(o); });
		indicatorsOf(pic).forEach(function (ind) {
			sel.appendChild(el("option", {value: "survey:" + ind, "data-survey": "1",
			    text: "Trygghetsmätning: " + indicatorName(ind)}));
		});
		sel.value = keep;
		if (sel.value !== keep)
			sel.value = "reports";
	}
	function controlsChanged() {
		var q = Object.assign({}, state.query);
		q.period = $("period").value;
		q.at = $("at").value;
		q.from = $("from").value;
		q.to = $("to").value;
		q.area = $("area").value;
		q.figure = $("figure").value;
		if (q.period === "custom" && (!q.from || !q.to)) {
			document.body.classList.add("custom");
			return; /* wait for both dates */
		}
		if (q.figure !== state.query.figure && q.period === state.query.period && q.at === state.query.at &&
		    q.area === state.query.area && q.from === state.query.from && q.to === state.query.to) {
			/* Only the map's shading changed: no need to ask the service again. */
			state.query = q;
			history.replaceState(null, "", "?" + pageQuery(q));
			learnSurveyPlaces().then(renderMap);
			return;
		}
		q.version = "";
		navigate(q);
	}
	function stepPeriod(dir) {
		var q = Object.assign({}, state.query), at = parseYmd(q.at) || today();
		var n = q.period === "month" ? 1 : q.period === "year" ? 12 : 3;
		if (q.period === "custom") {
			var f = parseYmd(q.from), t = parseYmd(q.to);
			if (!f || !t) return;
			var days = Math.round((t - f) / 86400000);
			q.from = ymd(new Date(f.getFullYear(), f.getMonth(), f.getDate() + dir * days));
			q.to = ymd(new Date(t.getFullYear(), t.getMonth(), t.getDate() + dir * days));
		} else {
			q.at = ymd(addMonths(q.period === "quarter" ? quarterStart(at) :
			    q.period === "year" ? new Date(at.getFullYear(), 0, 1) : at, dir * n));
		}
		q.version = "";
		navigate(q);
	}
	function preset(period, at) {
		var q = Object.assign({}, state.query, {period: period, at: ymd(at), from: "", to: "", version: ""});
		navigate(q);
	}
	function wireControls() {
		["period", "at", "from", "to", "area", "figure"].forEach(function (id) {
			$(id).addEventListener("change", controlsChanged);
		});
		$("controls").addEventListener("submit", function (e) { e.preventDefault(); });
		$("last-quarter").addEventListener("click", function () { preset("quarter", addMonths(quarterStart(today()), -3)); });
		$("last-month").addEventListener("click", function () { preset("month", addMonths(today(), -1)); });
		$("this-year").addEventListener("click", function () { preset("year", new Date(today().getFullYear(), 0, 1)); });
		$("prev-period").addEventListener("click", function () { stepPeriod(-1); });
		$("next-period").addEventListener("click", function () { stepPeriod(1); });
		$("print").addEventListener("click", function () { window.print(); });
		["dl-csv", "dl-geojson"].forEach(function (id) { $(id).addEventListener("click", download); });
		$("publish").addEventListener("click", publish);
		window.addEventListener("popstate", function () { state.query = readQuery(); load(); });
		/* Paper has no disclosure triangles: print the tables folded away. */
		window.addEventListener("beforeprint", function () {
			Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) {
				if (!d.open) { d.open = true; d.setAttribute("data-print-opened", ""); }
			});
		});
		window.addEventListener("afterprint", function () {
			Array.prototype.forEach.call(document.querySelectorAll("details[data-print-opened]"), function (d) {
				d.open = false; d.removeAttribute("data-print-opened");
			});
		});
	}
	/* With a key, a plain link would fetch the public file: fetch it with the
	 * key and save that instead. Without one the link works as it is. */
	function download(ev) {
		if (!state.key)
			return;
		ev.preventDefault();
		var a = ev.currentTarget;
		fetch(a.href, {headers: {"Authorization": "Bearer " + state.key}}).then(function (r) {
			if (!r.ok) throw new Error("HTTP " + r.status);
			return r.blob();
		}).then(function (b) {
			var url = URL.createObjectURL(b);
			var tmp = el("a", {href: url, download: a.getAttribute("download")});
			document.body.appendChild(tmp);
			tmp.click();
			document.body.removeChild(tmp);
			setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
		}).catch(function (e) { setStatus("Nedladdningen misslyckades: " + e.message, true); });
	}

	/* ---- rendering ---- */

	/* Finding statuses (proto/trygg/walks.proto FindingUpdated.status), in
	 * the order a finding moves through them. */
	var STATUS_NAMES = {proposed: "Föreslagen", accepted: "Accepterad", open: "Öppen",
	    in_progress: "Pågår", done: "Åtgärdad", verified: "Kontrollerad", not_fixed: "Ej åtgärdad",
	    declined: "Avböjd"};
	var STATUS_ORDER = ["proposed", "accepted", "open", "in_progress", "done", "verified", "not_fixed", "declined"];
	var INDICATOR_NAMES = {worry_late_evening: "Oro att gå ut sent på kvällen",
	    avoid_places: "Undviker platser", unsafe_area: "Otrygg i området",
	    worry_crime: "Oro för brott", litter_problem: "Nedskräpning ett problem"};
	var AUDIENCE = {staff: "Personal", police: "Polis", partner: "Partner", "public": "Publik vy"};

	function indicatorName(code) {
		return INDICATOR_NAMES[code] || String(code).replace(/_/g, " ");
	}
	function indicatorsOf(pic) {
		var out = [];
		((pic && pic.survey) || []).forEach(function (s) {
			(s.indicators || []).forEach(function (i) { if (out.indexOf(i.indicator) < 0) out.push(i.indicator); });
		});
		return out;
	}
	function canEdit() {
		var pic = state.picture;
		return !!state.key && !state.query.version && pic && (pic.audience === "staff" || pic.audience === "police");
	}

	function render() {
		var pic = state.picture, q = state.query;
		var areaName = pic.area && pic.area.name ? pic.area.name : "";
		$("area-title").textContent = areaName ? "\u2013 " + areaName : "";
		$("period-title").textContent = periodLabel(pic.period) +
		    (pic.period ? " (" + fmtDate(pic.period.from) + " \u2013 " + fmtDate(lastDay(pic.period.to)) + ")" : "");
		$("audience").textContent = AUDIENCE[pic.audience] || pic.audience || "";
		$("audience").className = "badge " + (pic.audience || "");
		document.title = "Trygghetsbild " + periodLabel(pic.period) + (areaName ? " \u2013 " + areaName : "");
		$("threshold").textContent = pic.suppression && pic.suppression.threshold ? pic.suppression.threshold : 5;
		$("generated").textContent = pic.generated_at ? "Sammanställd " + fmtDateTime(pic.generated_at) + "." : "";
		$("printed-at").textContent = fmtDateTime(new Date().toISOString());
		$("printed-url").textContent = location.host + location.pathname + "?" + pageQuery(q);
		/* A frozen version fixes its own period and area: point the pickers
		 * at them so the downloads and "back to live" match what is shown. */
		if (q.version && pic.period) {
			q.period = pic.period.kind || "custom";
			q.at = pic.period.from || "";
			if (q.period === "custom") { q.from = pic.period.from; q.to = pic.period.to; }
			if (pic.area) q.area = pic.area.kind === "district" ? "district" : pic.area.kind + ":" + pic.area.slug;
		}
		syncControls(q);
		fillFigures();
		renderVersionBanner();
		renderCards();
		renderMap();
		renderPlaceTable();
		renderTrend();
		renderCategories();
		renderResponse();
		renderWalks();
		renderSurvey();
		renderHotspots();
		renderComments();
		$("publish-row").hidden = !canEdit();
	}
	function lastDay(to) {
		var d = parseYmd(to);
		return d ? ymd(new Date(d.getFullYear(), d.getMonth(), d.getDate() - 1)) : to;
	}

	function renderVersionBanner() {
		var b = $("version-banner"), v = state.picture.version;
		clear(b);
		if (!state.query.version || !v) {
			b.hidden = true;
			return;
		}
		b.hidden = false;
		var live = Object.assign({}, state.query, {version: ""});
		append(b, [el("strong", {text: "Publicerad version"}), " \u2013 publicerad " + fmtDateTime(v.published_at) +
		    " av " + (v.published_by || "okänd") + ". Skrivskyddad. ",
		    el("a", {href: "?" + pageQuery(live), text: "Visa aktuell bild"})]);
	}

	function card(title, c, path, extra) {
		return el("div", {"class": "card"},
		    el("div", {"class": "card-title", text: title}),
		    el("div", {"class": "card-value"}, countFig(path, c)),
		    el("div", {"class": "card-cmp"},
			arrow(c, "previous", "mot föregående period"), " ",
			el("span", {"class": "cmp-label"}, "föreg. ", countFig(path, c, "previous")), " ",
			arrow(c, "last_year", "mot samma period förra året"), " ",
			el("span", {"class": "cmp-label"}, "förra året ", countFig(path, c, "last_year"))),
		    extra || null);
	}
	function renderCards() {
		var t = state.picture.totals || {}, box = clear($("cards"));
		box.appendChild(card("Anmälningar", t.reports, "totals.reports"));
		box.appendChild(card("Dagtid", t.day, "totals.day"));
		box.appendChild(card("Efter mörkrets inbrott", t.night, "totals.night"));
		var r = state.picture.response || {};
		if (r.done)
			box.appendChild(el("div", {"class": "card"},
			    el("div", {"class": "card-title", text: "Åtgärdat inom målet"}),
			    el("div", {"class": "card-value"}, fig("response.done.within_target_share", "share",
				r.done.within_target_share, !!r.done.suppressed)),
			    el("div", {"class": "card-cmp"}, "median ", fig("response.done.median_min", "minutes",
				r.done.median_min, !!r.done.suppressed), ", ", fig("response.overdue_now", "count", nz(r.overdue_now), !!r.suppressed),
				" försenade nu")));
	}

	/* ---- the map ---- */

	/* Rings of a Polygon or MultiPolygon geometry as [[lon, lat], ...] lists. */
	function ringsOf(g) {
		if (!g) return [];
		if (g.type === "Polygon") return g.coordinates || [];
		if (g.type === "MultiPolygon")
			return (g.coordinates || []).reduce(function (a, p) { return a.concat(p); }, []);
		return [];
	}
	/* An equirectangular projection scaled by cos(latitude) at the middle,
	 * fitted into w x h with a margin; y grows southwards. */
	function projection(places, w, h, margin) {
		var minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
		places.forEach(function (p) {
			ringsOf(p.geometry).forEach(function (r) {
				r.forEach(function (c) {
					minX = Math.min(minX, c[0]); maxX = Math.max(maxX, c[0]);
					minY = Math.min(minY, c[1]); maxY = Math.max(maxY, c[1]);
				});
			});
		});
		if (!isFinite(minX))
			return null;
		var k = Math.cos((minY + maxY) / 2 * Math.PI / 180);
		var sw = (maxX - minX) * k || 1e-6, sh = (maxY - minY) || 1e-6;
		var s = Math.min((w - 2 * margin) / sw, (h - 2 * margin) / sh);
		var ox = (w - sw * s) / 2, oy = (h - sh * s) / 2;
		return {
			width: w, height: h,
			fn: function (lon, lat) { return [ox + (lon - minX) * k * s, oy + (maxY - lat) * s]; }
		};
	}
	function pathOf(g, proj) {
		return ringsOf(g).map(function (r) {
			return r.map(function (c, i) {
				var p = proj.fn(c[0], c[1]);
				return (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1);
			}).join("") + "Z";
		}).join("");
	}
	/* The middle of a place's outer ring (its vertex average: the places are
	 * small and convex enough for a label). */
	function centreOf(g, proj) {
		var r = ringsOf(g)[0] || [], x = 0, y = 0, n = 0;
		r.forEach(function (c, i) {
			if (i === r.length - 1 && c[0] === r[0][0] && c[1] === r[0][1]) return;
			var p = proj.fn(c[0], c[1]);
			x += p[0]; y += p[1]; n++;
		});
		return n ? [x / n, y / n] : [0, 0];
	}

	/* Per place: {value, label, suppressed} for the chosen figure. */
	function figureValues(figure) {
		var pic = state.picture, mp = state.mapPicture || pic, out = {};
		var byPlace = {};
		(mp.by_place || []).forEach(function (p, i) { byPlace[p.place] = {row: p, i: i}; });
		/* A place the map's picture does not list had no reports in the
		 * district, or lies outside the area of a frozen version. */
		var whole = !mp.area || mp.area.kind === "district";
		state.places.forEach(function (pl) {
			var e = byPlace[pl.slug], r = e ? e.row : null;
			var v = null, sup = false, text;
			if (!r && !whole) {
				text = "utanför området";
			} else if (figure === "reports") {
				v = r ? cval(r.count) : 0;
				sup = !!(r && cnt(r.count).suppressed);
				text = fmt("count", v, sup) + " anmälningar";
			} else if (figure === "night") {
				var n = r ? cval(r.night) : null, c = r ? cval(r.count) : null;
				sup = !!(r && (cnt(r.night).suppressed || cnt(r.count).suppressed));
				v = n !== null && c ? n / c : null;
				text = v === null ? (sup ? "dolt (<5)" : "inga anmälningar") : fmtShare(v) + " efter mörkrets inbrott";
			} else if (figure === "change") {
				var now = r ? cval(r.count) : 0, prev = r ? cnt(r.count).previous : 0;
				sup = !!(r && cnt(r.count).suppressed);
				if (now !== null && prev !== null && prev !== undefined) {
					v = prev ? (now - prev) / prev : (now ? 1 : 0);
					text = (now - prev >= 0 ? "+" : "\u2212") + fmtInt(Math.abs(now - prev)) + " mot föregående period";
				} else {
					text = sup ? "dolt (<5)" : "ingen jämförelse";
				}
			} else if (figure.slice(0, 7) === "survey:") {
				var ind = figure.slice(7);
				(pic.survey || []).forEach(function (s) {
					var inArea = state.surveyPlaces[s.area] || s.places || [];
					var covers = s.area === pl.slug || inArea.indexOf(pl.slug) >= 0;
					if (!covers) return;
					(s.indicators || []).forEach(function (i) { if (i.indicator === ind && i.value !== null) v = i.value; });
				});
				text = v === null ? "ingen mätning här" : fmtPercentValue(v) + " " + indicatorName(ind).toLowerCase();
			}
			out[pl.slug] = {value: v, suppressed: sup, text: text};
		});
		return out;
	}
	/* Five classes: sequential from 0 to the largest value, or diverging
	 * around no change. */
	function classesFor(figure, values) {
		if (figure === "change") {
			var br = [-0.5, -0.15, 0.15, 0.5];
			var dl = ["minskat mer än 50 %", "minskat 15\u201350 %", "ungefär oförändrat (\u00b115 %)",
			    "ökat 15\u201350 %", "ökat mer än 50 %"];
			return {
				names: ["d0", "d1", "d2", "d3", "d4"], labels: dl,
				of: function (v) { for (var i = 0; i < br.length; i++) if (v < br[i]) return "d" + i; return "d4"; }
			};
		}
		/* Five equal intervals from 0 to the largest value, so the busiest
		 * place is always drawn in the darkest shade. */
		var max = 0;
		Object.keys(values).forEach(function (k) { if (values[k].value !== null) max = Math.max(max, values[k].value); });
		var isShare = figure === "night", isPct = figure.slice(0, 7) === "survey:";
		var span = max || 1, labels = [];
		for (var i = 0; i < 5; i++) {
			if (isShare || isPct) {
				var f = isShare ? fmtShare : fmtPercentValue;
				labels.push(f(i * span / 5).replace(/\u00a0%$/, "") + "\u2013" + f((i + 1) * span / 5));
			} else {
				var lo = Math.ceil(i * span / 5 - 1e-9), hi = i === 4 ? max : Math.ceil((i + 1) * span / 5 - 1e-9) - 1;
				labels.push(hi < lo ? "\u2013" : hi === lo ? fmtInt(lo) : fmtInt(lo) + "\u2013" + fmtInt(hi));
			}
		}
		return {
			names: ["q0", "q1", "q2", "q3", "q4"], labels: labels,
			of: function (v) { return "q" + Math.max(0, Math.min(4, Math.floor(5 * v / span + 1e-9))); }
		};
	}
	function niceStep(x, integer) {
		var p = Math.pow(10, Math.floor(Math.log10(x))), m = x / p;
		var s = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
		return integer ? Math.max(1, Math.ceil(s)) : s;
	}
	function renderMap() {
		var box = clear($("map")), legend = clear($("legend"));
		var figure = state.query.figure || "reports";
		var places = state.places.filter(function (p) { return p.kind !== "district"; });
		var district = state.places.filter(function (p) { return p.kind === "district"; });
		var W = 720, H = 560;
		/* Fit to the places (the district's boundary is drawn behind them
		 * and may run off the edges): the places are what is read. */
		var proj = projection(places.length ? places : district, W, H, 44);
		if (!proj) {
			box.appendChild(el("p", {text: "Inga platser är inlagda."}));
			return;
		}
		var values = figureValues(figure), classes = classesFor(figure, values);
		var selected = state.query.area.indexOf("place:") === 0 ? state.query.area.slice(6) : null;
		var figText = $("figure").selectedOptions.length ? $("figure").selectedOptions[0].textContent : figure;
		var svg = sv("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "map-title map-desc",
		    "class": "map-svg", "data-figure-shown": figure},
		    sv("title", {id: "map-title", text: "Karta: " + figText + " per plats"}),
		    sv("desc", {id: "map-desc", text: "Stadsdelens platser ritade efter sina gränser; samma siffror finns i tabellen under kartan."}));
		district.forEach(function (d) {
			svg.appendChild(sv("path", {d: pathOf(d.geometry, proj), "class": "district", "data-district": d.slug},
			    sv("title", {text: d.name})));
		});
		var labels = sv("g", {"class": "labels", "aria-hidden": "true"});
		/* Larger places first, so small ones are drawn (and clickable) on top. */
		places.slice().sort(function (a, b) { return area(b.geometry) - area(a.geometry); }).forEach(function (p) {
			var v = values[p.slug] || {value: null};
			var cls = v.value === null ? (v.suppressed ? "suppressed" : "nodata") : classes.of(v.value);
			var path = sv("path", {
				d: pathOf(p.geometry, proj), "class": "place " + cls + (p.slug === selected ? " selected" : ""),
				"data-place": p.slug, "data-class": cls, tabindex: 0, role: "link",
				"aria-label": p.name + ": " + v.text,
				onclick: function () { pickPlace(p.slug); },
				onkeydown: function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pickPlace(p.slug); } }
			}, sv("title", {text: p.name + ": " + v.text}));
			svg.appendChild(path);
			var c = centreOf(p.geometry, proj);
			labels.appendChild(sv("text", {x: c[0].toFixed(1), y: c[1].toFixed(1), "class": "label", text: p.name}));
		});
		svg.appendChild(labels);
		/* A scale bar: 500 m at the district's latitude. */
		var bar = scaleBar(proj, district.length ? district : places);
		if (bar) svg.appendChild(bar);
		box.appendChild(svg);
		spreadLabels(labels);

		legend.appendChild(el("div", {"class": "legend-title", text: figText}));
		var items = classes.names.map(function (n, i) { return [n, classes.labels[i]]; });
		items.push(["suppressed", "dolt: färre än 5"]);
		items.push(["nodata", "inga uppgifter"]);
		items.forEach(function (it) {
			legend.appendChild(el("div", {"class": "legend-item"},
			    sv("svg", {width: 18, height: 14, viewBox: "0 0 18 14", "aria-hidden": "true"},
				sv("rect", {x: 0.5, y: 0.5, width: 17, height: 13, "class": "place " + it[0]})),
			    el("span", {text: it[1]})));
		});
		legend.appendChild(el("p", {"class": "legend-note", text: "Klicka på en plats för att visa bara den."}));
	}
	/* Moves a label up or down (by whole lines) until it overlaps no label
	 * placed before it; larger places were drawn, and so placed, first. */
	function spreadLabels(g) {
		var placed = [];
		Array.prototype.forEach.call(g.childNodes, function (t) {
			var y0 = parseFloat(t.getAttribute("y")), b;
			try { b = t.getBBox(); } catch (e) { return; }
			var tries = [0, 12, -12, 24, -24, 36, -36];
			for (var i = 0; i < tries.length; i++) {
				var box = {x: b.x - 2, y: b.y + tries[i] - 1, w: b.width + 4, h: b.height + 2};
				var hit = placed.some(function (p) {
					return box.x < p.x + p.w && p.x < box.x + box.w && box.y < p.y + p.h && p.y < box.y + box.h;
				});
				if (!hit || i === tries.length - 1) {
					t.setAttribute("y", (y0 + tries[i]).toFixed(1));
					placed.push(box);
					return;
				}
			}
		});
	}
	function area(g) {
		var r = ringsOf(g)[0] || [], a = 0;
		for (var i = 0; i + 1 < r.length; i++) a += r[i][0] * r[i + 1][1] - r[i + 1][0] * r[i][1];
		return Math.abs(a / 2);
	}
	function scaleBar(proj, places) {
		var lat = null, lon = null;
		places.forEach(function (p) { var r = ringsOf(p.geometry)[0]; if (r && r.length && lat === null) { lon = r[0][0]; lat = r[0][1]; } });
		if (lat === null) return null;
		var dlon = 500 / (111320 * Math.cos(lat * Math.PI / 180));
		var a = proj.fn(lon, lat), b = proj.fn(lon + dlon, lat), len = b[0] - a[0];
		var x = proj.width - 24 - len, y = proj.height - 20;
		return sv("g", {"class": "scalebar", "aria-hidden": "true"},
		    sv("path", {d: "M" + x + " " + (y - 5) + "V" + y + "H" + (x + len) + "V" + (y - 5)}),
		    sv("text", {x: x + len / 2, y: y - 8, text: "500 m"}));
	}
	function pickPlace(slug) {
		var q = Object.assign({}, state.query, {area: "place:" + slug, version: ""});
		navigate(q);
	}

	function table(caption, heads, rows, cls) {
		return el("table", {"class": "data " + (cls || "")},
		    el("caption", {text: caption}),
		    el("thead", null, el("tr", null, heads.map(function (h, i) {
			    return el("th", {scope: "col", "class": i ? "n" : null, text: h});
		    }))),
		    el("tbody", null, rows.map(function (r) {
			    return el("tr", null, r.map(function (c, i) {
				    return i === 0 ? el("th", {scope: "row"}, c) : el("td", {"class": "n"}, c);
			    }));
		    })));
	}

	function renderPlaceTable() {
		var rows = (state.picture.by_place || []).map(function (p, i) {
			var b = "by_place." + i;
			return [p.name || p.place, countFig(b + ".count", p.count), countFig(b + ".day", p.day),
			    countFig(b + ".night", p.night), countFig(b + ".count", p.count, "previous"),
			    arrow(p.count, "previous", "mot föregående period"), countFig(b + ".count", p.count, "last_year"),
			    fig(b + ".repeat_reports", "count", nz(p.repeat_reports), !!p.suppressed),
			    fig(b + ".reopened", "count", nz(p.reopened), !!p.suppressed)];
		});
		clear($("place-table")).appendChild(table("Anmälningar per plats",
		    ["Plats", "Anmälningar", "Dag", "Mörker", "Föreg. period", "Förändring", "Förra året", "Upprepade", "Återöppnade"], rows));
	}

	/* ---- charts ---- */

	function bucketLabel(start, bucket) {
		var d = parseYmd(start);
		if (!d) return String(start);
		if (bucket === "month") return MONTHS_SHORT[d.getMonth()] + (d.getMonth() === 0 ? " " + d.getFullYear() : "");
		return d.getDate() + "/" + (d.getMonth() + 1);
	}
	function renderTrend() {
		var t = state.picture.trend || {series: []}, s = t.series || [], box = clear($("trend-chart"));
		var W = 760, H = 250, L = 44, R = 10, T = 14, B = 42;
		var max = 0;
		s.forEach(function (b) { if (b.count !== null) max = Math.max(max, b.count); });
		/* A suppressed bucket is drawn hatched up to 4 (somewhere below 5),
		 * so the scale reaches 5 at least. */
		var threshold = (state.picture.suppression && state.picture.suppression.threshold) || 5;
		if (s.some(function (b) { return b.count === null; })) max = Math.max(max, threshold);
		var step = niceStep(Math.max(max, 4) / 4, true), top = step * Math.ceil(Math.max(max, 1) / step);
		var y = function (v) { return T + (H - T - B) * (1 - v / top); };
		var bw = (W - L - R) / Math.max(1, s.length);
		var svg = sv("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "trend-title", "class": "chart-svg"},
		    sv("title", {id: "trend-title", text: "Anmälningar per " + ({day: "dag", week: "vecka", month: "månad"}[t.bucket] || "period") +
			", dag och mörker"}));
		for (var v = 0; v <= top; v += step) {
			svg.appendChild(sv("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), "class": "grid"}));
			svg.appendChild(sv("text", {x: L - 6, y: y(v) + 4, "class": "axis", "text-anchor": "end", text: fmtInt(v)}));
		}
		var every = Math.ceil(s.length / 16);
		s.forEach(function (b, i) {
			var x = L + i * bw + bw * 0.12, w = bw * 0.76;
			var g = sv("g", {"class": "bucket"});
			if (b.count === null) {
				var hi = Math.min(top, threshold - 1);
				g.appendChild(sv("rect", {x: x, y: y(hi), width: w, height: y(0) - y(hi), "class": "bar suppressed"},
				    sv("title", {text: bucketLabel(b.start, t.bucket) + ": färre än " + threshold + " (dolt)"})));
			} else {
				var night = b.night === null ? 0 : b.night;
				/* the night part at the bottom, the day part on top of it */
				g.appendChild(sv("rect", {x: x, y: y(b.count), width: w, height: Math.max(0, y(night) - y(b.count)), "class": "bar day"}));
				g.appendChild(sv("rect", {x: x, y: y(night), width: w, height: Math.max(0, y(0) - y(night)),
				    "class": "bar night" + (b.night === null ? " suppressed" : "")}));
				g.appendChild(sv("title", {text: bucketLabel(b.start, t.bucket) + ": " + fmtInt(b.count) + " anmälningar, " +
				    (b.night === null ? "<5" : fmtInt(b.night)) + " efter mörkrets inbrott"}));
			}
			svg.appendChild(g);
			if (i % every === 0)
				svg.appendChild(sv("text", {x: x + w / 2, y: H - B + 16, "class": "axis", "text-anchor": "middle",
				    text: bucketLabel(b.start, t.bucket)}));
		});
		svg.appendChild(sv("line", {x1: L, x2: W - R, y1: y(0), y2: y(0), "class": "baseline"}));
		var lg = sv("g", {"class": "chart-legend", transform: "translate(" + L + "," + (H - 12) + ")"},
		    sv("rect", {x: 0, y: -9, width: 12, height: 10, "class": "bar day"}), sv("text", {x: 16, y: 0, text: "dag"}),
		    sv("rect", {x: 60, y: -9, width: 12, height: 10, "class": "bar night"}), sv("text", {x: 76, y: 0, text: "efter mörkrets inbrott"}),
		    sv("rect", {x: 230, y: -9, width: 12, height: 10, "class": "bar suppressed"}), sv("text", {x: 246, y: 0, text: "färre än 5 (dolt)"}));
		svg.appendChild(lg);
		box.appendChild(svg);
		var rows = s.map(function (b, i) {
			return [bucketLabel(b.start, t.bucket) + " (" + b.start + ")",
			    fig("trend.series." + i + ".count", "count", nz(b.count), !!b.suppressed),
			    fig("trend.series." + i + ".night", "count", nz(b.night), !!b.suppressed)];
		});
		clear($("trend-table")).appendChild(table("Anmälningar per " + ({day: "dag", week: "vecka", month: "månad"}[t.bucket] || "period"),
		    ["Från", "Anmälningar", "Efter mörkrets inbrott"], rows));
	}

	function renderCategories() {
		var pic = state.picture, box = clear($("category-tables"));
		var rows = (pic.by_category || []).map(function (c, i) {
			var b = "by_category." + i;
			return [c.name || c.category, countFig(b + ".count", c.count), countFig(b + ".night", c.night),
			    countFig(b + ".count", c.count, "previous"), arrow(c.count, "previous", "mot föregående period"),
			    arrow(c.count, "last_year", "mot förra året")];
		});
		box.appendChild(table("Per kategori", ["Kategori", "Antal", "Mörker", "Föreg.", "Mot föreg.", "Mot förra året"], rows));
		var rows2 = (pic.by_focus_area || []).map(function (f, i) {
			return [f.name || f.focus_area, countFig("by_focus_area." + i + ".count", f.count),
			    arrow(f.count, "previous", "mot föregående period")];
		});
		box.appendChild(table("Per fokusområde", ["Fokusområde", "Antal", "Mot föreg."], rows2));
	}

	/* Response times on a log scale from 10 minutes to 30 days, so a one-hour
	 * target and a one-week target both read; each row has its target line. */
	function renderResponse() {
		var r = state.picture.response || {}, box = clear($("response-chart"));
		var cards = clear($("response-cards"));
		[["ack", "Kvittens"], ["done", "Åtgärd"]].forEach(function (k) {
			var s = r[k[0]];
			if (!s) return;
			cards.appendChild(el("div", {"class": "card"},
			    el("div", {"class": "card-title"}, k[1] + " (", fig("response." + k[0] + ".n", "count", nz(s.n), !!s.suppressed), " ärenden)"),
			    el("div", {"class": "card-value"}, fig("response." + k[0] + ".median_min", "minutes", nz(s.median_min), !!s.suppressed),
				el("span", {"class": "unit", text: " median"})),
			    el("div", {"class": "card-cmp"}, "90 % inom ", fig("response." + k[0] + ".p90_min", "minutes", nz(s.p90_min), !!s.suppressed),
				" \u00b7 inom målet ", fig("response." + k[0] + ".within_target_share", "share", nz(s.within_target_share), !!s.suppressed))));
		});
		var cats = r.by_category || [];
		var W = 760, L = 170, R = 96, rowH = 34, T = 26, H = T + cats.length * rowH + 40;
		var lo = Math.log(10), hi = Math.log(30 * 1440);
		var x = function (m) { return L + (W - L - R) * (Math.log(Math.max(10, Math.min(30 * 1440, m))) - lo) / (hi - lo); };
		var svg = sv("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "resp-title", "class": "chart-svg"},
		    sv("title", {id: "resp-title", text: "Svarstider per kategori: median och 90:e percentil mot målet"}));
		[[15, "15 min"], [60, "1 h"], [240, "4 h"], [1440, "24 h"], [4320, "3 d"], [10080, "7 d"], [43200, "30 d"]].forEach(function (t) {
			svg.appendChild(sv("line", {x1: x(t[0]), x2: x(t[0]), y1: T - 6, y2: H - 34, "class": "grid"}));
			svg.appendChild(sv("text", {x: x(t[0]), y: H - 20, "class": "axis", "text-anchor": "middle", text: t[1]}));
		});
		svg.appendChild(sv("text", {x: W - R + 8, y: T - 10, "class": "axis", text: "inom mål"}));
		cats.forEach(function (c, i) {
			var y0 = T + i * rowH;
			var g = sv("g", {"class": "resp-row"});
			g.appendChild(sv("text", {x: L - 8, y: y0 + rowH / 2 + 4, "class": "rowlabel", "text-anchor": "end", text: categoryName(c)}));
			[["ack", 6], ["done", 17]].forEach(function (k) {
				var s = c[k[0]];
				if (!s || s.median_min === null || s.median_min === undefined) return;
				var yy = y0 + k[1];
				g.appendChild(sv("rect", {x: L, y: yy, width: Math.max(1, x(s.median_min) - L), height: 9, "class": "bar " + k[0]},
				    sv("title", {text: (k[0] === "ack" ? "Kvittens" : "Åtgärd") + ": median " + fmtMinutes(s.median_min) +
					(s.p90_min !== null && s.p90_min !== undefined ? ", 90 % inom " + fmtMinutes(s.p90_min) : "")})));
				if (s.p90_min !== null && s.p90_min !== undefined)
					g.appendChild(sv("path", {d: "M" + x(s.median_min) + " " + (yy + 4.5) + "H" + x(s.p90_min) +
					    "M" + x(s.p90_min) + " " + (yy + 1) + "V" + (yy + 8), "class": "whisker"}));
			});
			if (c.target_min !== null && c.target_min !== undefined) {
				var tx = x(c.target_min);
				g.appendChild(sv("line", {x1: tx, x2: tx, y1: y0 + 2, y2: y0 + rowH - 4, "class": "target"},
				    sv("title", {text: "Mål: " + (c.target_min ? fmtMinutes(c.target_min) : "omedelbart")})));
			}
			var d = c.done || {};
			g.appendChild(sv("text", {x: W - R + 8, y: y0 + rowH / 2 + 4, "class": "rowvalue",
			    text: fmt("share", nz(d.within_target_share), !!d.suppressed)}));
			svg.appendChild(g);
		});
		var lg = sv("g", {"class": "chart-legend", transform: "translate(" + L + "," + (H - 4) + ")"},
		    sv("rect", {x: 0, y: -9, width: 12, height: 9, "class": "bar ack"}), sv("text", {x: 16, y: 0, text: "kvittens, median"}),
		    sv("rect", {x: 130, y: -9, width: 12, height: 9, "class": "bar done"}), sv("text", {x: 146, y: 0, text: "åtgärd, median"}),
		    sv("path", {d: "M250 -4.5H270M270 -8V-1", "class": "whisker"}), sv("text", {x: 276, y: 0, text: "till 90:e percentilen"}),
		    sv("line", {x1: 420, x2: 420, y1: -10, y2: 1, "class": "target"}), sv("text", {x: 426, y: 0, text: "mål (t.ex. 24 h)"}));
		svg.appendChild(lg);
		if (cats.length)
			box.appendChild(svg);
		var rows = cats.map(function (c, i) {
			var b = "response.by_category." + i;
			var a = c.ack || {}, d = c.done || {};
			return [categoryName(c), c.target_min ? fmtMinutes(c.target_min) : "omedelbart",
			    fig(b + ".ack.median_min", "minutes", nz(a.median_min), !!a.suppressed),
			    fig(b + ".done.median_min", "minutes", nz(d.median_min), !!d.suppressed),
			    fig(b + ".done.p90_min", "minutes", nz(d.p90_min), !!d.suppressed),
			    fig(b + ".done.within_target_share", "share", nz(d.within_target_share), !!d.suppressed),
			    fig(b + ".done.n", "count", nz(d.n), !!d.suppressed)];
		});
		var tb = clear($("response-tables"));
		tb.appendChild(table("Svarstider per kategori", ["Kategori", "Mål", "Kvittens median", "Åtgärd median",
		    "Åtgärd 90 %", "Inom mål", "Ärenden"], rows));
		var units = (r.by_unit || []).map(function (u, i) {
			var b = "response.by_unit." + i, a = u.ack || {}, d = u.done || {};
			return [u.unit, fig(b + ".ack.median_min", "minutes", nz(a.median_min), !!a.suppressed),
			    fig(b + ".done.median_min", "minutes", nz(d.median_min), !!d.suppressed),
			    fig(b + ".done.within_target_share", "share", nz(d.within_target_share), !!d.suppressed),
			    fig(b + ".overdue_now", "count", nz(u.overdue_now), !!u.suppressed)];
		});
		if (units.length)
			tb.appendChild(table("Per utförare", ["Enhet", "Kvittens median", "Åtgärd median", "Inom mål", "Försenade nu"], units));
	}
	/* A category's name: its own, or the one by_category gives its code. */
	function categoryName(c) {
		if (c.name) return c.name;
		var hit = (state.picture.by_category || []).filter(function (b) { return b.category === c.category; })[0];
		return hit && hit.name ? hit.name : String(c.category).replace(/_/g, " ");
	}
	function nz(v) { return v === undefined ? null : v; }

	function hbars(id, title, items, fmtKind) {
		/* items: [{label, value, cls}] */
		var W = 360, L = 120, R = 44, rowH = 22, H = items.length * rowH + 8;
		var max = Math.max.apply(null, items.map(function (i) { return i.value || 0; }).concat([1]));
		var svg = sv("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": id + "-t", "class": "chart-svg small"},
		    sv("title", {id: id + "-t", text: title}));
		items.forEach(function (it, i) {
			var y = 4 + i * rowH;
			svg.appendChild(sv("text", {x: L - 6, y: y + 14, "class": "rowlabel", "text-anchor": "end", text: it.label}));
			if (it.value === null || it.value === undefined) {
				svg.appendChild(sv("rect", {x: L, y: y + 3, width: 18, height: 14, "class": "bar suppressed"}));
			} else {
				svg.appendChild(sv("rect", {x: L, y: y + 3, width: Math.max(1, (W - L - R) * it.value / max), height: 14,
				    "class": "bar " + (it.cls || "done")}));
			}
			svg.appendChild(sv("text", {x: L + 4 + (it.value ? (W - L - R) * it.value / max : 20), y: y + 14, "class": "rowvalue",
			    text: fmt(fmtKind, it.value, it.value === null)}));
		});
		return svg;
	}

	function renderWalks() {
		var w = state.picture.walks || {}, st = w.by_status || {};
		var cards = clear($("walk-cards"));
		cards.appendChild(el("div", {"class": "card"}, el("div", {"class": "card-title", text: "Vandringar"}),
		    el("div", {"class": "card-value"}, fig("walks.walks", "count", nz(w.walks), false))));
		cards.appendChild(el("div", {"class": "card"}, el("div", {"class": "card-title", text: "Fynd"}),
		    el("div", {"class": "card-value"}, fig("walks.findings", "count", nz(w.findings), false))));
		cards.appendChild(el("div", {"class": "card"}, el("div", {"class": "card-title", text: "Åtgärdat inom 6 mån"}),
		    el("div", {"class": "card-value"}, fig("walks.done_within_6_months_share", "share", nz(w.done_within_6_months_share), false))));
		cards.appendChild(el("div", {"class": "card"}, el("div", {"class": "card-title", text: "Försenade"}),
		    el("div", {"class": "card-value"}, fig("walks.overdue", "count", nz(w.overdue), false))));
		var keys = Object.keys(st).sort(function (a, b) {
			var i = STATUS_ORDER.indexOf(a), j = STATUS_ORDER.indexOf(b);
			return (i < 0 ? 99 : i) - (j < 0 ? 99 : j) || (a < b ? -1 : 1);
		});
		var box = clear($("walks-chart"));
		if (keys.length)
			box.appendChild(hbars("walks", "Vandringarnas fynd efter status", keys.map(function (k) {
				return {label: STATUS_NAMES[k] || k, value: st[k], cls: k === "done" || k === "verified" ? "done" : k === "declined" || k === "not_fixed" ? "declined" : "ack"};
			}), "count"));
		var tb = clear($("walks-table"));
		tb.appendChild(table("Fynd efter status", ["Status", "Fynd"], keys.map(function (k) {
			return [STATUS_NAMES[k] || k, fig("walks.by_status." + k, "count", st[k], false)];
		})));
		if ((w.declined || []).length)
			tb.appendChild(table("Avböjda åtgärder per ansvarig", ["Ansvarig", "Antal"], w.declined.map(function (d, i) {
				return [d.owner, fig("walks.declined." + i + ".count", "count", d.count, false)];
			})));
	}

	function renderSurvey() {
		var s = state.picture.survey || [], box = clear($("survey-chart")), tb = clear($("survey-table"));
		if (!s.length) {
			tb.appendChild(el("p", {"class": "muted", text: "Ingen trygghetsmätning för området."}));
			return;
		}
		var inds = indicatorsOf(state.picture);
		var ind = inds.indexOf("worry_late_evening") >= 0 ? "worry_late_evening" : inds[0];
		var sel = state.query.figure.slice(0, 7) === "survey:" ? state.query.figure.slice(7) : null;
		if (sel && inds.indexOf(sel) >= 0) ind = sel;
		/* Two panels side by side per area: the indicator and the reports. */
		var W = 470, L = 130, mid = 340, rowH = 24, T = 20, H = T + s.length * rowH + 6;
		var maxR = 1;
		s.forEach(function (a) { var v = cval(a.reports); if (v !== null) maxR = Math.max(maxR, v); });
		var svg = sv("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "survey-t", "class": "chart-svg small"},
		    sv("title", {id: "survey-t", text: indicatorName(ind) + " (procent) bredvid antal anmälningar per område"}),
		    sv("text", {x: L, y: 12, "class": "axis", text: indicatorName(ind) + " %"}),
		    sv("text", {x: mid + 6, y: 12, "class": "axis", text: "anmälningar"}));
		s.forEach(function (a, i) {
			var y = T + i * rowH, v = null;
			(a.indicators || []).forEach(function (x) { if (x.indicator === ind) v = x.value; });
			svg.appendChild(sv("text", {x: L - 6, y: y + 14, "class": "rowlabel", "text-anchor": "end", text: a.name || a.area}));
			if (v !== null) {
				svg.appendChild(sv("rect", {x: L, y: y + 4, width: (mid - L - 36) * Math.min(100, v) / 100, height: 13, "class": "bar survey"}));
				svg.appendChild(sv("text", {x: L + 3 + (mid - L - 36) * Math.min(100, v) / 100, y: y + 15, "class": "rowvalue", text: fmtPercentValue(v)}));
			}
			var r = cval(a.reports);
			svg.appendChild(sv("rect", {x: mid + 6, y: y + 4, width: r === null ? 16 : Math.max(1, (W - mid - 46) * r / maxR), height: 13,
			    "class": "bar " + (r === null ? "suppressed" : "day")}));
			svg.appendChild(sv("text", {x: mid + 10 + (r === null ? 16 : (W - mid - 46) * r / maxR), y: y + 15, "class": "rowvalue",
			    text: fmt("count", r, cnt(a.reports).suppressed)}));
		});
		box.appendChild(svg);
		var heads = ["Område", "Mätning"].concat(inds.map(indicatorName)).concat(["Anmälningar"]);
		var rows = s.map(function (a, i) {
			var cells = [a.name || a.area, (a.survey || "") + " " + (a.year || "") + (a.illustrative ? " (illustrativ)" : "")];
			inds.forEach(function (code) {
				var j = (a.indicators || []).findIndex(function (x) { return x.indicator === code; });
				cells.push(j < 0 ? "\u2013" : fig("survey." + i + ".indicators." + j + ".value",
				    a.indicators[j].unit === "percent" ? "percent" : "number", a.indicators[j].value, false));
			});
			cells.push(countFig("survey." + i + ".reports", a.reports));
			return cells;
		});
		tb.appendChild(table("Trygghetsmätningen och anmälningarna per område", heads, rows));
		if (s.some(function (a) { return a.illustrative; }))
			tb.appendChild(el("p", {"class": "muted", text: "Illustrativa värden: ersätts med stadens mätning när den laddas in."}));
	}

	function renderHotspots() {
		var box = clear($("hotspots"));
		var h = state.picture.hotspots || [];
		if (!h.length)
			box.appendChild(el("li", {"class": "muted", text: "Inga platser sticker ut under perioden."}));
		h.forEach(function (p, i) {
			var b = "hotspots." + i;
			box.appendChild(el("li", {"data-place": p.place},
			    el("span", {"class": "rank", text: String(p.rank)}),
			    el("div", null,
				el("strong", {text: p.name || p.place}), " \u2013 poäng ", fig(b + ".score", "score", nz(p.score), !!p.suppressed),
				", ", fig(b + ".reports", "count", nz(p.reports), !!p.suppressed), " anmälningar, ",
				fig(b + ".night", "count", nz(p.night), !!p.suppressed), " efter mörkrets inbrott",
				el("p", {"class": "explain", text: p.explanation || ""}),
				el("div", {"class": "comment-slot"}))));
		});
	}

	/* ---- comments, versions ---- */

	function periodBody() {
		var p = state.picture.period || {};
		return {kind: p.kind || state.query.period, from: p.from, to: p.to};
	}
	/* The name of a comment's subject: sections are summary,
	 * focus_area:<code> and place:<slug> (what PUT /v1/comments takes). */
	function commentSubject(key) {
		var pic = state.picture;
		if (key === "summary")
			return "sammanfattningen";
		if (key.indexOf("focus_area:") === 0) {
			var code = key.slice(11);
			var f = (pic.by_focus_area || []).filter(function (x) { return x.focus_area === code; })[0];
			return "fokusområdet " + (f && f.name ? f.name : code.replace(/_/g, " "));
		}
		if (key.indexOf("place:") === 0) {
			var slug = key.slice(6);
			var pl = state.places.filter(function (x) { return x.slug === slug; })[0];
			return pl ? pl.name : slug;
		}
		return key;
	}
	/* A comment as text (read-only, absent when empty) or, for staff and
	 * police on the live picture, a textarea with its own save button. */
	function commentBox(key) {
		var comments = state.picture.comments || {}, text = comments[key] || "";
		var label = "Kommentar om " + commentSubject(key);
		if (!canEdit()) {
			return text ? el("div", {"class": "comment"},
			    el("div", {"class": "comment-label", text: label}),
			    el("p", {"class": "comment-text", "data-comment": key, text: text})) : null;
		}
		var id = "comment-" + key.replace(/[^a-z0-9_-]/gi, "-");
		var ta = el("textarea", {id: id, rows: 3, "data-comment": key,
		    placeholder: "Skriv en kommentar om " + commentSubject(key) + "…"});
		ta.value = text;
		var st = el("span", {"class": "saved", role: "status", "aria-live": "polite"});
		var btn = el("button", {type: "button", "class": "secondary", "data-save": key, text: "Spara kommentar"});
		var printed = el("p", {"class": "comment-text print-only", text: text});
		var box = el("div", {"class": "comment edit" + (text ? "" : " empty")},
		    el("label", {"for": id, "class": "comment-label", text: label}),
		    ta, el("div", {"class": "comment-actions"}, btn, st), printed);
		btn.addEventListener("click", function () {
			btn.disabled = true;
			st.textContent = "Sparar…";
			api("PUT", "/v1/comments", {period: periodBody(), area: state.query.area, section: key, text: ta.value})
			    .then(function () {
				    comments[key] = ta.value;
				    printed.textContent = ta.value;
				    box.classList.toggle("empty", !ta.value);
				    st.textContent = "Sparad " + fmtDateTime(new Date().toISOString()).replace(/^.* /, "");
			    })
			    .catch(function (e) { st.textContent = "Kunde inte spara: " + e.message; })
			    .then(function () { btn.disabled = false; });
		});
		return box;
	}
	function renderComments() {
		var pic = state.picture, used = {};
		function put(slot, key) {
			if (!slot || used[key]) return;
			used[key] = true;
			var b = commentBox(key);
			if (b) slot.appendChild(b);
		}
		put(clear(document.querySelector("#sec-summary .comment-slot")), "summary");
		var mapSlot = clear(document.querySelector("#sec-map .comment-slot"));
		if (state.query.area.indexOf("place:") === 0)
			put(mapSlot, state.query.area);
		var fa = clear($("focus-comments"));
		(pic.by_focus_area || []).forEach(function (f) { put(fa, "focus_area:" + f.focus_area); });
		Array.prototype.forEach.call(document.querySelectorAll("#hotspots li[data-place]"), function (li) {
			put(li.querySelector(".comment-slot"), "place:" + li.getAttribute("data-place"));
		});
		/* Comments on places or focus areas not shown above, read as well. */
		var other = clear($("other-comments"));
		Object.keys(pic.comments || {}).sort().forEach(function (k) { put(other, k); });
	}

	function publish() {
		var btn = $("publish"), st = $("publish-status");
		btn.disabled = true;
		st.textContent = "Publicerar…";
		api("POST", "/v1/versions", {period: periodBody(), area: state.query.area}).then(function (j) {
			var v = j && j.version ? j.version : j;
			st.textContent = "Publicerad" + (v && v.id ? " (version " + v.id + ")" : "") + ".";
			loadVersions();
		}).catch(function (e) {
			st.textContent = "Kunde inte publicera: " + e.message;
		}).then(function () { btn.disabled = false; });
	}
	function loadVersions() {
		api("GET", "/v1/versions").then(function (j) {
			var list = Array.isArray(j) ? j : (j && j.versions) || [];
			var ul = clear($("versions"));
			if (!list.length)
				ul.appendChild(el("li", {"class": "muted", text: "Ingen version publicerad ännu."}));
			list.forEach(function (v) {
				var p = v.period || {}, a = v.area || {};
				var areaName = v.area_name || (a && a.name) || (typeof a === "string" ? a : "");
				var label = (periodLabel(p) || v.id) + (areaName ? " \u2013 " + areaName : "");
				ul.appendChild(el("li", {"data-version": v.id},
				    el("a", {href: "?version=" + encodeURIComponent(v.id), text: label}),
				    " publicerad " + fmtDateTime(v.published_at) + " av " + (v.published_by || "okänd"),
				    v.id === state.query.version ? el("span", {"class": "badge", text: "visas nu"}) : null));
			});
		}).catch(function () {
			clear($("versions")).appendChild(el("li", {"class": "muted", text: "Versionerna kunde inte hämtas."}));
		});
	}

	function start() {
		takeKey();
		state.query = readQuery();
		wireControls();
		load();
	}
	if (document.readyState === "loading")
		document.addEventListener("DOMContentLoaded", start);
	else
		start();
})();
