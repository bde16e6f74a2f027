/*
 * phone.js: the walk on a phone (issue 10, item 7).
 *
 * Reads the walk id from ?walk= and the walk key from #key= (stored in
 * IndexedDB for that walk, then the fragment is cleared so the key does not
 * stay in the address bar or history), loads the walk and the meta (the
 * service worker and a copy in IndexedDB keep them for offline use), shows
 * one stop at a time and a form for a finding. A saved finding goes to the
 * local queue (queue.js) with its own idempotency key and is sent when the
 * network allows; the list shows each one as queued, sent or in error with
 * the server's message. Nothing here needs the network to record.
 */
(function () {
	"use strict";

	var Q = window.TryggQueue;
	var FLUSH_EVERY_MS = 10000;
	var SENT_KEPT_MS = 14 * 24 * 3600 * 1000;
	var PARAM_NAMES = {
		lighting: "Belysning", openness: "Öppenhet", visibility: "Överblick", people: "Människor",
		security: "Trygghet", walk_path: "Gångväg", public_transport: "Kollektivtrafik",
		gender_usage: "Könsfördelning", feeling: "Känsla"
	};
	var KIND_NAMES = {
		district_unit: "Stadsdelens enhet", administration: "Förvaltning", housing: "Bostadsbolag",
		private: "Privat fastighetsägare"
	};
	var DEFAULT_PARAMS = Object.keys(PARAM_NAMES);

	var walkId = new URLSearchParams(location.search).get("walk");
	var state = { walk: null, meta: null, stop: 0, key: null, items: [] };

	function $(id) { return document.getElementById(id); }

	function el(tag, attrs, text) {
		var e = document.createElement(tag);
		Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
		if (text != null)
			e.textContent = text;
		return e;
	}

	function banner(msg, kind) {
		var b = $("banner");
		b.textContent = msg || "";
		b.hidden = !msg;
		b.className = "banner" + (kind ? " " + kind : "");
	}

	/* --- the walk key: from the fragment once, then from IndexedDB --- */

	function takeKeyFromFragment() {
		var m = /(?:^#|&)key=([^&]*)/.exec(location.hash);
		if (!m)
			return Promise.resolve(null);
		var key = decodeURIComponent(m[1]);
		history.replaceState(null, "", location.pathname + location.search);
		return Q.saveWalk(walkId, { key: key }).then(function () { return key; });
	}

	/* --- loading the walk and meta, with the last copy as fallback --- */

	function getJson(path, auth) {
		var headers = { "Accept": "application/json" };
		if (auth)
			headers.Authorization = "Bearer " + auth;
		return fetch(Q.apiBase() + path, { headers: headers, credentials: "omit" }).then(function (res) {
			return res.json().catch(function () { return null; }).then(function (body) {
				if (!res.ok) {
					var e = new Error(body && body.error && body.error.message || "HTTP " + res.status);
					e.status = res.status;
					throw e;
				}
				return body;
			});
		});
	}

	function load() {
		return Q.getWalk(walkId).then(function (rec) {
			rec = rec || {};
			state.key = rec.key || null;
			state.walk = rec.walk || null;
			state.meta = rec.meta || null;
			if (state.walk)
				render();
			if (!state.key) {
				banner("Nyckel saknas: öppna länken till vandringen igen. / No walk key: open the walk's link again.", "error");
				return render();
			}
			var walkP = getJson("/v1/walks/" + encodeURIComponent(walkId), state.key);
			var metaP = getJson("/v1/meta", null);
			return Promise.all([walkP, metaP]).then(function (r) {
				state.walk = r[0];
				state.meta = r[1];
				banner("");
				return Q.saveWalk(walkId, { walk: r[0], meta: r[1] });
			}, function (err) {
				if (err && (err.status === 401 || err.status === 403 || err.status === 404))
					banner("Vandringen kunde inte hämtas: " + err.message + " / The walk could not be loaded.", "error");
				else if (state.walk)
					banner("Ingen förbindelse: visar sparad kopia. / Offline: showing the saved copy.", "warn");
				else
					banner("Ingen förbindelse och ingen sparad kopia. / Offline and nothing saved yet.", "error");
			}).then(render);
		});
	}

	/* --- rendering --- */

	function stops() { return state.walk && state.walk.stops || []; }

	function currentStop() { return stops()[state.stop] || null; }

	function stopIndexKey() { return "trygg.walk." + walkId + ".stop"; }

	function setStop(i) {
		var n = stops().length;
		state.stop = Math.max(0, Math.min(n - 1, i));
		try { localStorage.setItem(stopIndexKey(), String(state.stop)); } catch (ignored) { }
		renderStop();
	}

	function renderStop() {
		var s = currentStop();
		var n = stops().length;
		$("stop").hidden = !state.walk;
		$("stop-pos").textContent = n ? "Stopp " + (state.stop + 1) + " av " + n : "Inga stopp / No stops";
		$("stop-name").textContent = s ? (s.name || s.place || "Stopp " + (state.stop + 1)) : "–";
		$("stop-info").textContent = s && s.minutes ? s.minutes + " min" : "";
		$("prev").disabled = state.stop <= 0;
		$("next").disabled = state.stop >= n - 1;
		$("use-stop").disabled = !(s && typeof s.lat === "number");
	}

	function fillSelect(sel, values, label) {
		var keep = sel.value;
		while (sel.options.length > 1)
			sel.remove(1);
		values.forEach(function (v) {
			var code = typeof v === "string" ? v : v.code;
			sel.appendChild(el("option", { value: code }, label(v)));
		});
		sel.value = keep;
	}

	function segmented(container, values, onPick) {
		container.textContent = "";
		values.forEach(function (v) {
			var b = el("button", { type: "button", "data-value": String(v), "aria-pressed": "false" }, String(v));
			b.addEventListener("click", function () { onPick(container, String(v)); });
			container.appendChild(b);
		});
	}

	/* A segmented control: one value or none (tap the chosen one again). */
	function pick(container, v) {
		var now = container.getAttribute("data-value") === v ? "" : v;
		container.setAttribute("data-value", now);
		Array.prototype.forEach.call(container.children, function (b) {
			b.setAttribute("aria-pressed", String(b.getAttribute("data-value") === now));
		});
	}

	function renderForm() {
		var meta = state.meta || {};
		fillSelect($("category"), meta.categories || [], function (c) { return c.name || c.code; });
		fillSelect($("responsible-kind"), meta.responsible_kinds || Object.keys(KIND_NAMES),
			function (k) { return KIND_NAMES[k] ? KIND_NAMES[k] + " (" + k + ")" : k; });
		if (!$("severity").children.length)
			segmented($("severity"), [1, 2, 3, 4, 5], pick);
		var box = $("scores");
		var params = meta.parameters || DEFAULT_PARAMS;
		if (box.getAttribute("data-params") !== params.join(",")) {
			box.textContent = "";
			params.forEach(function (p) {
				var row = el("div", { "class": "score" });
				row.appendChild(el("span", { "class": "score-name" }, PARAM_NAMES[p] || p));
				var seg = el("div", { "class": "seg", "data-param": p, "data-value": "", role: "group",
					"aria-label": PARAM_NAMES[p] || p });
				segmented(seg, [0, 1, 2, 3], pick);
				row.appendChild(seg);
				box.appendChild(row);
			});
			box.setAttribute("data-params", params.join(","));
		}
		$("finding").hidden = !state.walk;
	}

	function stateLabel(item) {
		if (item.state === "sent")
			return "Skickad / sent";
		if (item.state === "error")
			return "Fel / error: " + (item.error || "HTTP " + item.status);
		return "I kö / queued" + (item.attempts ? " (försök " + item.attempts + ")" : "");
	}

	function renderList() {
		var list = $("findings");
		list.textContent = "";
		var queued = 0;
		var names = {};
		((state.meta && state.meta.categories) || []).forEach(function (c) { names[c.code] = c.name; });
		state.items.slice().reverse().forEach(function (item) {
			if (item.state === "queued")
				queued++;
			var li = el("li", { "class": "finding " + item.state, "data-state": item.state, "data-key": item.idem,
				"data-finding-id": item.finding_id || "" });
			var s = stops()[item.body.stop_index];
			li.appendChild(el("strong", {}, (names[item.body.category] || item.body.category) +
				" · " + item.body.severity));
			li.appendChild(el("span", { "class": "muted" }, " " + (s ? s.name || s.place : "stopp " + (item.body.stop_index + 1))));
			if (item.body.description)
				li.appendChild(el("p", {}, item.body.description));
			li.appendChild(el("p", { "class": "sync-state" }, stateLabel(item)));
			if (item.state === "error") {
				/* A key the server knows for another finding: this one was
				 * never stored, so it may go again under a new key. */
				var asNew = item.error_code === "idempotency_conflict";
				var retry = el("button", { type: "button", "class": "big retry" },
					asNew ? "Skicka som ny / Send as new" : "Försök igen / Retry");
				retry.addEventListener("click", function () {
					Q.requeue(item.seq, asNew).then(function () { return syncNow(true); });
				});
				li.appendChild(retry);
			}
			list.appendChild(li);
		});
		$("queue-count").textContent = queued + " i kö";
		$("queue-count").setAttribute("data-queued", String(queued));
		$("recorded").hidden = !state.walk && !state.items.length;
	}

	function renderNet() {
		var on = navigator.onLine;
		$("net").textContent = on ? "Online" : "Offline";
		$("net").setAttribute("data-online", String(on));
	}

	function render() {
		if (state.walk) {
			$("title").textContent = state.walk.title || "Trygghetsvandring";
			document.title = state.walk.title || document.title;
			var saved = parseInt(localStorage.getItem(stopIndexKey()) || "0", 10);
			state.stop = Math.max(0, Math.min(stops().length - 1, isNaN(saved) ? 0 : saved));
		}
		renderStop();
		renderForm();
		renderNet();
		return refreshList();
	}

	function refreshList() {
		return Q.listFindings(walkId).then(function (items) {
			state.items = items;
			renderList();
		});
	}

	/* --- recording --- */

	function num(v) {
		v = String(v || "").trim().replace(",", ".");
		if (v === "")
			return null;
		var n = Number(v);
		return isFinite(n) ? n : NaN;
	}

	function collect() {
		var f = { stop_index: state.stop };
		var s = currentStop();
		if (s && typeof s.index === "number")
			f.stop_index = s.index;
		f.category = $("category").value;
		f.severity = parseInt($("severity").getAttribute("data-value"), 10);
		f.scores = {};
		Array.prototype.forEach.call($("scores").querySelectorAll(".seg"), function (seg) {
			var v = seg.getAttribute("data-value");
			if (v !== "")
				f.scores[seg.getAttribute("data-param")] = parseInt(v, 10);
		});
		f.description = $("description").value.trim();
		f.photo_url = $("photo").value.trim() || null;
		f.lat = num($("lat").value);
		f.long = num($("long").value);
		f.night = null; /* the server knows the walk's time and place */
		f.responsible_kind = $("responsible-kind").value || null;
		f.responsible = $("responsible").value.trim();
		f.deadline = $("deadline").value || null;
		if (!f.category)
			return { error: "Välj kategori / Choose a category", field: "category" };
		if (!(f.severity >= 1 && f.severity <= 5))
			return { error: "Välj allvarlighet / Choose a severity", field: "severity" };
		if (f.photo_url && !/^https?:\/\/\S+$/.test(f.photo_url))
			return { error: "Foto: en http(s)-adress / Photo: an http(s) URL", field: "photo" };
		if (!f.responsible_kind)
			return { error: "Välj ansvarig typ / Choose the responsible kind", field: "responsible-kind" };
		if (!f.responsible)
			return { error: "Ange ansvarig / Name the responsible party", field: "responsible" };
		if ((f.lat === null) !== (f.long === null) || isNaN(f.lat) || isNaN(f.long) ||
		    (f.lat !== null && (Math.abs(f.lat) > 90 || Math.abs(f.long) > 180)))
			return { error: "Ogiltig position: lat och long / Invalid position", field: "lat" };
		return { body: f };
	}

	function resetForm() {
		["description", "photo", "lat", "long", "responsible", "deadline"].forEach(function (id) { $(id).value = ""; });
		$("category").value = "";
		$("responsible-kind").value = "";
		Array.prototype.forEach.call(document.querySelectorAll("#finding .seg"), function (seg) {
			seg.setAttribute("data-value", "");
			Array.prototype.forEach.call(seg.children, function (b) { b.setAttribute("aria-pressed", "false"); });
		});
		$("locate-msg").textContent = "";
	}

	function save(ev) {
		ev.preventDefault();
		var c = collect();
		var msg = $("form-msg");
		if (c.error) {
			msg.textContent = c.error;
			msg.className = "form-msg error";
			var f = $(c.field);
			if (f && f.focus)
				f.focus();
			return;
		}
		$("save").disabled = true;
		Q.enqueue(walkId, c.body).then(function () {
			msg.textContent = "Sparad i telefonen / Saved on the phone";
			msg.className = "form-msg ok";
			resetForm();
			window.scrollTo(0, 0);
			if (navigator.serviceWorker && navigator.serviceWorker.ready && "SyncManager" in window) {
				navigator.serviceWorker.ready.then(function (reg) {
					return reg.sync.register("trygg-findings");
				}).catch(function () { /* the page's own flushing covers it */ });
			}
			return refreshList();
		}, function (err) {
			msg.textContent = "Kunde inte spara: " + err;
			msg.className = "form-msg error";
		}).then(function () {
			/* The next finding can be saved at once; sending runs on its own. */
			$("save").disabled = false;
			syncNow(false);
		});
	}

	/* --- position --- */

	function locate() {
		var msg = $("locate-msg");
		if (!navigator.geolocation) {
			msg.textContent = "Ingen positionering i webbläsaren: skriv in eller använd stoppets. / No geolocation: type it in.";
			return;
		}
		msg.textContent = "Hämtar position… / Locating…";
		navigator.geolocation.getCurrentPosition(function (p) {
			$("lat").value = p.coords.latitude.toFixed(6);
			$("long").value = p.coords.longitude.toFixed(6);
			msg.textContent = "±" + Math.round(p.coords.accuracy) + " m";
		}, function (e) {
			msg.textContent = "Ingen position (" + e.message + "): skriv in eller använd stoppets. / Type it in.";
		}, { enableHighAccuracy: true, timeout: 15000, maximumAge: 30000 });
	}

	function useStop() {
		var s = currentStop();
		if (s && typeof s.lat === "number") {
			$("lat").value = String(s.lat);
			$("long").value = String(s.long);
		}
	}

	/* --- syncing --- */

	function syncNow(force) {
		renderNet();
		return Q.flush(force).then(function (st) {
			if (st.busy) {
				/* The worker is sending; ask again soon, so a forced flush
				 * (the network is back) is not lost. */
				if (force)
					setTimeout(function () { syncNow(true); }, 1000);
				return;
			}
			var m = st.sent ? st.sent + " skickade. " : "";
			if (st.queued)
				m += st.queued + " väntar på nätet. / waiting for the network.";
			if (st.errors)
				m += " " + st.errors + " fel. / errors.";
			$("sync-msg").textContent = m;
		}, function (err) {
			$("sync-msg").textContent = "Kunde inte skicka: " + err;
		}).then(refreshList);
	}

	function start() {
		var last = null;
		try { last = localStorage.getItem("trygg.walk.last"); } catch (ignored) { }
		if (!walkId && last) {
			/* Opened from the home screen (start_url has no walk): the last one. */
			location.replace("?walk=" + encodeURIComponent(last));
			return;
		}
		if (!walkId) {
			banner("Öppna länken till vandringen (…/phone/?walk=…). / Open the walk's link.", "error");
			return;
		}
		try { localStorage.setItem("trygg.walk.last", walkId); } catch (ignored) { }
		if ("serviceWorker" in navigator) {
			navigator.serviceWorker.register("sw.js", { scope: "./" }).catch(function (e) {
				console.warn("service worker not registered", e);
			});
			/* On the first visit the walk and meta were fetched before the
			 * worker took over, so it has not cached them: fetch them again
			 * through it. */
			var hadController = !!navigator.serviceWorker.controller;
			navigator.serviceWorker.addEventListener("controllerchange", function () {
				if (!hadController && state.key)
					load();
				hadController = true;
			});
			navigator.serviceWorker.addEventListener("message", function (ev) {
				if (ev.data && ev.data.type === "flushed")
					refreshList();
			});
		}
		$("prev").addEventListener("click", function () { setStop(state.stop - 1); });
		$("next").addEventListener("click", function () { setStop(state.stop + 1); });
		$("finding").addEventListener("submit", save);
		$("locate").addEventListener("click", locate);
		$("use-stop").addEventListener("click", useStop);
		$("sync").addEventListener("click", function () { syncNow(true); });
		$("queue-count").addEventListener("click", function () { $("recorded").scrollIntoView(); });
		window.addEventListener("online", function () { syncNow(true); });
		window.addEventListener("offline", renderNet);
		document.addEventListener("visibilitychange", function () {
			if (document.visibilityState === "visible")
				syncNow(false);
		});
		setInterval(function () { syncNow(false); }, FLUSH_EVERY_MS);
		Q.prune(SENT_KEPT_MS).catch(function () { });
		takeKeyFromFragment().then(load).then(function () { return syncNow(true); }).then(function () {
			document.body.setAttribute("data-ready", "true");
		}, function (err) {
			banner("Fel: " + err, "error");
			document.body.setAttribute("data-ready", "true");
		});
	}

	start();
})();
