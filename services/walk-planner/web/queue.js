/*
 * queue.js: the phone page's local store and its outbox of findings.
 *
 * Loaded by the page (<script src="queue.js">) and by the service worker
 * (importScripts), so both flush the same queue the same way: the page on
 * load, on `online`, after each save and every few seconds; the service
 * worker on a Background Sync event when the browser has one (the page
 * never relies on it).
 *
 * IndexedDB "trygg-walk" holds two stores:
 *   walks     {walk_id, key, walk, meta, saved_at}: the walk key (the
 *             service worker cannot read localStorage, so the key lives
 *             here) and the last walk and meta JSON seen, for offline use;
 *   findings  {seq, walk_id, idem, body, state, attempts, next_at, status,
 *             error, finding_id, created_at, sent_at}, seq auto-increments
 *             so the queue is sent in the order it was recorded.
 *
 * A finding's Idempotency-Key (idem) is made once, when it is recorded, and
 * sent with every attempt: a request whose answer was lost is sent again
 * with the same key and the server answers with the finding it already has.
 * Outcomes: 200/201 -> "sent"; 408, 425, 429, 5xx or no answer -> stays
 * "queued" with backoff and the rest of that walk's queue waits (order);
 * any other 4xx -> "error" with the server's message, kept and shown, and
 * the queue goes on. Only sent findings are ever deleted (prune, after
 * a fortnight).
 */
(function (root) {
	"use strict";

	var DB_NAME = "trygg-walk";
	var DB_VERSION = 1;
	var SEND_TIMEOUT_MS = 20000;
	var BACKOFF_BASE_MS = 2000;
	var BACKOFF_MAX_MS = 60000;

	var dbPromise = null;

	function openDb() {
		if (dbPromise)
			return dbPromise;
		dbPromise = new Promise(function (resolve, reject) {
			var req = indexedDB.open(DB_NAME, DB_VERSION);
			req.onupgradeneeded = function () {
				var db = req.result;
				if (!db.objectStoreNames.contains("walks"))
					db.createObjectStore("walks", { keyPath: "walk_id" });
				if (!db.objectStoreNames.contains("findings")) {
					var s = db.createObjectStore("findings", { keyPath: "seq", autoIncrement: true });
					s.createIndex("walk", "walk_id");
					s.createIndex("idem", "idem", { unique: true });
				}
			};
			req.onsuccess = function () { resolve(req.result); };
			req.onerror = function () { dbPromise = null; reject(req.error); };
		});
		return dbPromise;
	}

	/* Runs fn(store) in one transaction; resolves with fn's request result. */
	function tx(storeName, mode, fn) {
		return openDb().then(function (db) {
			return new Promise(function (resolve, reject) {
				var t = db.transaction(storeName, mode);
				var r = fn(t.objectStore(storeName));
				t.oncomplete = function () { resolve(r && "result" in r ? r.result : undefined); };
				t.onerror = function () { reject(t.error); };
				t.onabort = function () { reject(t.error || new Error("transaction aborted")); };
			});
		});
	}

	function getWalk(walkId) {
		return tx("walks", "readonly", function (s) { return s.get(walkId); });
	}

	/* Merges `fields` into the walk's record (creating it). */
	function saveWalk(walkId, fields) {
		return getWalk(walkId).then(function (rec) {
			rec = rec || { walk_id: walkId };
			Object.keys(fields).forEach(function (k) { rec[k] = fields[k]; });
			rec.saved_at = Date.now();
			return tx("walks", "readwrite", function (s) { return s.put(rec); });
		});
	}

	/* All findings of a walk (or of every walk when walkId is null), by seq. */
	function listFindings(walkId) {
		return tx("findings", "readonly", function (s) {
			return walkId == null ? s.getAll() : s.index("walk").getAll(walkId);
		}).then(function (rows) {
			return rows.sort(function (a, b) { return a.seq - b.seq; });
		});
	}

	function putFinding(item) {
		return tx("findings", "readwrite", function (s) { return s.put(item); });
	}

	/*
	 * Forgets findings sent more than maxAgeMs ago (the server has them; a
	 * phone that is lost should not carry old ones). Queued and refused
	 * findings are never forgotten.
	 */
	function prune(maxAgeMs) {
		var before = Date.now() - maxAgeMs;
		return listFindings(null).then(function (items) {
			var old = items.filter(function (i) { return i.state === "sent" && Date.parse(i.sent_at) < before; });
			if (!old.length)
				return 0;
			return tx("findings", "readwrite", function (s) {
				old.forEach(function (i) { s.delete(i.seq); });
			}).then(function () { return old.length; });
		});
	}

	/* A random UUID; crypto.randomUUID needs a secure context, so fall back. */
	function uuid() {
		if (root.crypto && root.crypto.randomUUID)
			return root.crypto.randomUUID();
		var b = new Uint8Array(16);
		root.crypto.getRandomValues(b);
		b[6] = (b[6] & 0x0f) | 0x40;
		b[8] = (b[8] & 0x3f) | 0x80;
		var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
		return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
	}

	/*
	 * Records a finding for walkId with body (the POST body of the API) and
	 * its own idempotency key; resolves with the stored item.
	 */
	function enqueue(walkId, body) {
		var item = {
			walk_id: walkId, idem: uuid(), body: body, state: "queued", attempts: 0,
			next_at: 0, status: null, error: null, finding_id: null,
			created_at: new Date().toISOString(), sent_at: null
		};
		return putFinding(item).then(function (seq) { item.seq = seq; return item; });
	}

	/*
	 * Puts an item in error back in the queue, to be sent now: with the same
	 * key, or with a new one when `newKey` (after a 409 saying its key names
	 * another finding: this one was never stored, so it cannot double).
	 */
	function requeue(seq, newKey) {
		return tx("findings", "readonly", function (s) { return s.get(seq); }).then(function (item) {
			if (!item || item.state !== "error")
				return item;
			item.state = "queued";
			item.next_at = 0;
			if (newKey) {
				item.old_idem = (item.old_idem || []).concat([item.idem]);
				item.idem = uuid();
			}
			return putFinding(item).then(function () { return item; });
		});
	}

	/* The API's root: the parent of the page's folder (/phone/ -> /). */
	function apiBase() {
		var scope = root.registration && root.registration.scope ? root.registration.scope : root.location.href;
		return new URL("../", scope).href.replace(/\/$/, "");
	}

	function backoff(attempts) {
		var d = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, Math.max(0, attempts - 1)));
		return Math.round(d * (0.8 + Math.random() * 0.4));
	}

	/* The server's error object ({code, message, field}) or a made-up one. */
	function serverError(status, text) {
		try {
			var e = JSON.parse(text).error;
			if (e && e.message)
				return e;
		} catch (ignored) {
		}
		return { code: null, message: "HTTP " + status + (text ? ": " + text.slice(0, 200) : "") };
	}

	function errorMessage(status, text) {
		var e = serverError(status, text);
		return e.message + (e.field ? " (" + e.field + ")" : "");
	}

	/* One POST of one item; resolves with {outcome, status, text}. */
	function send(item, key) {
		var ctl = typeof AbortController !== "undefined" ? new AbortController() : null;
		var timer = ctl ? setTimeout(function () { ctl.abort(); }, SEND_TIMEOUT_MS) : null;
		return fetch(apiBase() + "/v1/walks/" + encodeURIComponent(item.walk_id) + "/findings", {
			method: "POST",
			headers: {
				"Authorization": "Bearer " + key,
				"Content-Type": "application/json",
				"Idempotency-Key": item.idem
			},
			body: JSON.stringify(item.body),
			cache: "no-store",
			credentials: "omit",
			signal: ctl ? ctl.signal : undefined
		}).then(function (res) {
			return res.text().then(function (text) {
				var s = res.status;
				if (s === 200 || s === 201)
					return { outcome: "sent", status: s, text: text };
				if (s === 408 || s === 425 || s === 429 || s >= 500)
					return { outcome: "retry", status: s, text: text };
				return { outcome: "error", status: s, text: text };
			});
		}, function (err) {
			return { outcome: "retry", status: 0, text: String(err && err.message || err) };
		}).then(function (r) {
			if (timer)
				clearTimeout(timer);
			return r;
		});
	}

	/* Stores the outcome of one attempt on the item. */
	function settle(item, r) {
		item.attempts += 1;
		item.status = r.status;
		if (r.outcome === "sent") {
			var f = null;
			try { f = JSON.parse(r.text).finding; } catch (ignored) { }
			item.state = "sent";
			item.error = null;
			item.finding_id = f && f.finding_id ? f.finding_id : null;
			item.sent_at = new Date().toISOString();
		} else if (r.outcome === "error") {
			item.state = "error";
			item.error = errorMessage(r.status, r.text);
			item.error_code = serverError(r.status, r.text).code;
		} else {
			item.next_at = Date.now() + backoff(item.attempts);
			item.error = r.status ? errorMessage(r.status, r.text) : "no network";
		}
		return putFinding(item);
	}

	var flushing = null;

	/*
	 * Sends every queued finding that is due, oldest first, walk by walk;
	 * `force` ignores the backoff (the network just came back). Resolves
	 * with {sent, errors, queued, busy}. One flush at a time in this context
	 * and, where the Web Locks API exists, across the page and the worker:
	 * while the other one flushes this one does nothing (busy: true) rather
	 * than wait behind a slow request. If two ever overlap, the idempotency
	 * key still makes the server keep one finding.
	 */
	function flush(force) {
		if (flushing)
			return flushing;
		var run = function () { return flushAll(!!force); };
		var locks = root.navigator && root.navigator.locks;
		var p = !locks ? run() : locks.request("trygg-walk-flush", { ifAvailable: true }, function (lock) {
			return lock ? run() : { sent: 0, errors: 0, queued: 0, busy: true };
		});
		flushing = p.then(function (r) { flushing = null; return r; }, function (e) { flushing = null; throw e; });
		return flushing;
	}

	function flushAll(force) {
		var stats = { sent: 0, errors: 0, queued: 0 };
		var blocked = {}; /* walk_id -> true once one of its items must wait */
		var keys = {};
		return listFindings(null).then(function (items) {
			var queued = items.filter(function (i) { return i.state === "queued"; });
			return queued.reduce(function (chain, item) {
				return chain.then(function () {
					if (blocked[item.walk_id] || (!force && item.next_at > Date.now())) {
						blocked[item.walk_id] = true;
						stats.queued++;
						return;
					}
					var keyP = item.walk_id in keys ? Promise.resolve(keys[item.walk_id])
						: getWalk(item.walk_id).then(function (w) { return (keys[item.walk_id] = w && w.key); });
					return keyP.then(function (key) {
						if (!key) {
							blocked[item.walk_id] = true;
							stats.queued++;
							return;
						}
						return send(item, key).then(function (r) {
							if (r.outcome === "sent")
								stats.sent++;
							else if (r.outcome === "error")
								stats.errors++;
							else {
								stats.queued++;
								blocked[item.walk_id] = true;
							}
							return settle(item, r);
						});
					});
				});
			}, Promise.resolve());
		}).then(function () { return stats; });
	}

	root.TryggQueue = {
		openDb: openDb, getWalk: getWalk, saveWalk: saveWalk, listFindings: listFindings,
		enqueue: enqueue, requeue: requeue, flush: flush, prune: prune, uuid: uuid, apiBase: apiBase
	};
})(self);
