/*
 * sw.js: the phone page's service worker (scope /phone/).
 *
 * Keeps the page usable with no network: its own files are cached when it
 * installs, and the walk and meta JSON (GET /v1/walks/{id}, GET /v1/meta)
 * each time they are fetched. Every GET it handles goes to the network
 * first (so a new version of the page or the walk is picked up at once)
 * and falls back to the cache when the network fails or has not answered
 * within a few seconds. POSTs are never touched: findings wait in the
 * IndexedDB queue (queue.js), which this worker also flushes on a
 * Background Sync event, where the browser has one.
 */
"use strict";

importScripts("queue.js");

var CACHE = "trygg-phone-v1";
var SHELL = ["./", "index.html", "phone.js", "queue.js", "phone.css", "manifest.webmanifest"];
var NETWORK_WAIT_MS = 4000;

self.addEventListener("install", function (event) {
	event.waitUntil(caches.open(CACHE).then(function (c) {
		return c.addAll(SHELL.map(function (f) { return new Request(f, { cache: "no-cache" }); }));
	}).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
	event.waitUntil(caches.keys().then(function (names) {
		return Promise.all(names.filter(function (n) { return n.indexOf("trygg-phone-") === 0 && n !== CACHE; })
			.map(function (n) { return caches.delete(n); }));
	}).then(function () { return self.clients.claim(); }));
});

/* Which GETs this worker answers: its own files and the walk/meta JSON. */
function cacheKey(request) {
	var url = new URL(request.url);
	if (url.origin !== self.location.origin)
		return null;
	var scope = new URL(self.registration.scope);
	var api = TryggQueue.apiBase();
	if (request.mode === "navigate" && url.pathname.indexOf(scope.pathname) === 0)
		return scope.href; /* /phone/?walk=... is the same page */
	if (url.href.indexOf(scope.href) === 0)
		return url.origin + url.pathname;
	var rest = url.href.slice(api.length);
	if (url.href.indexOf(api) === 0 && (rest === "/v1/meta" || /^\/v1\/walks\/[^/?#]+$/.test(rest)))
		return url.href;
	return null;
}

function fromCache(key) {
	return caches.open(CACHE).then(function (c) { return c.match(key); });
}

/*
 * The network's answer (stored under `key` when it is a 200), or the
 * cached one when the network fails or is slower than NETWORK_WAIT_MS and
 * the cache has one; otherwise whatever the network gives in the end.
 */
function networkFirst(request, key) {
	var net = fetch(request).then(function (res) {
		if (res.status === 200) {
			var copy = res.clone();
			caches.open(CACHE).then(function (c) { return c.put(key, copy); });
		}
		return res;
	});
	return new Promise(function (resolve, reject) {
		var done = false;
		var fallback = function (err) {
			fromCache(key).then(function (hit) {
				if (done)
					return;
				if (hit) {
					done = true;
					resolve(hit);
				} else if (err) {
					done = true;
					reject(err);
				}
			});
		};
		var timer = setTimeout(function () { fallback(null); }, NETWORK_WAIT_MS);
		net.then(function (res) {
			clearTimeout(timer);
			if (!done) {
				done = true;
				resolve(res);
			}
		}, function (err) {
			clearTimeout(timer);
			fallback(err);
		});
	});
}

self.addEventListener("fetch", function (event) {
	if (event.request.method !== "GET")
		return;
	var key = cacheKey(event.request);
	if (!key)
		return;
	event.respondWith(networkFirst(event.request, key).catch(function () {
		return new Response(JSON.stringify({ error: { code: "offline", message: "no network and nothing cached" } }),
			{ status: 503, headers: { "Content-Type": "application/json" } });
	}));
});

function tellClients(stats) {
	return self.clients.matchAll().then(function (cs) {
		cs.forEach(function (c) { c.postMessage({ type: "flushed", stats: stats }); });
	});
}

self.addEventListener("sync", function (event) {
	/* Rejecting while findings still wait asks the browser to try again. */
	if (event.tag === "trygg-findings")
		event.waitUntil(TryggQueue.flush(true).then(function (stats) {
			return tellClients(stats).then(function () {
				if (stats.queued)
					throw new Error(stats.queued + " findings still queued");
			});
		}));
});

self.addEventListener("message", function (event) {
	if (event.data && event.data.type === "flush")
		event.waitUntil(TryggQueue.flush(!!event.data.force).then(tellClients));
});
