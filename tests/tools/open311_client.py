"""A small, independent Open311 GeoReport v2 client (standard library only).

It behaves the way FixMyStreet's perllib/Open311.pm talks to an endpoint,
so the integration tests see intake through a real client's eyes rather
than through intake's own helpers:

  - documents are XML by default (services.xml, services/{code}.xml,
    requests.xml, tokens/{token}.xml), parsed with xml.etree, or JSON;
  - POST requests.{fmt} is application/x-www-form-urlencoded UTF-8 with
    api_key (and jurisdiction_id when set) added to the form, every
    attribute as attribute[code]=value (empty values included: the client
    sends what it knows), lists as repeated attribute[code][] fields;
  - the POST answer carries a service_request_id, or else a token that is
    resolved through tokens/{token};
  - GET requests filters by service_request_id (comma-separated list) or
    start_date/end_date, with api_key and jurisdiction_id in the query.

Errors raise Open311Error with the HTTP status and the spec's error
document (code, description) when the body is one.
"""
import json
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


class Open311Error(Exception):
    def __init__(self, status, code, description, content_type):
        super().__init__("%s %s: %s" % (status, code, description))
        self.status, self.code, self.description = status, code, description
        self.content_type = content_type


def _element_to_value(e):
    """An XML element as a Python value: text, a dict of children, or a list
    for repeated child tags (the shape XML::Simple gives FixMyStreet)."""
    children = list(e)
    if not children:
        return e.text
    out = {}
    for c in children:
        v = _element_to_value(c)
        if c.tag in out:
            if not isinstance(out[c.tag], list):
                out[c.tag] = [out[c.tag]]
            out[c.tag].append(v)
        else:
            out[c.tag] = v
    return out


class Open311Client:
    def __init__(self, endpoint, api_key=None, jurisdiction=None, fmt="xml", timeout=10):
        self.endpoint = endpoint.rstrip("/") + "/"
        self.api_key, self.jurisdiction, self.fmt, self.timeout = api_key, jurisdiction, fmt, timeout
        self.last_content_type = None

    # ---- transport ----

    def _request(self, method, path, params):
        params = dict(params or {})
        if self.jurisdiction:
            params["jurisdiction_id"] = self.jurisdiction
        if method == "POST" and self.api_key:
            params["api_key"] = self.api_key
        pairs = []
        for k, v in params.items():
            for item in (v if isinstance(v, list) else [v]):
                pairs.append((k, "" if item is None else str(item)))
        url = self.endpoint + path
        data = None
        headers = {}
        if method == "GET":
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs, encoding="utf-8")
        else:
            data = urllib.parse.urlencode(pairs, encoding="utf-8").encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                self.last_content_type = r.headers.get("Content-Type", "")
                return self._parse(r.read(), self.last_content_type)
        except urllib.error.HTTPError as e:
            body = e.read()
            ctype = e.headers.get("Content-Type", "")
            code, desc = e.code, body.decode("utf-8", "replace")
            try:
                doc = self._parse(body, ctype)
                err = doc["error"] if isinstance(doc, dict) else doc[0]
                if isinstance(err, list):
                    err = err[0]
                code, desc = int(err["code"]), err["description"]
            except (ValueError, KeyError, IndexError, TypeError, ET.ParseError):
                pass
            raise Open311Error(e.code, code, desc, ctype) from None

    def _parse(self, body, content_type):
        if content_type.startswith("text/xml"):
            root = ET.fromstring(body)  # refuses anything XML cannot carry
            return _element_to_value(root) if len(root) else {}
        if content_type.startswith("application/json"):
            return json.loads(body.decode("utf-8"))
        raise ValueError("unexpected Content-Type %r" % content_type)

    def _get(self, path, params=None):
        params = dict(params or {})
        if self.api_key:
            params.setdefault("api_key", self.api_key)
        return self._request("GET", path, params)

    @staticmethod
    def _as_list(v):
        if v is None:
            return []
        return v if isinstance(v, list) else [v]

    def _records(self, doc, tag):
        """The list of records in a document: JSON arrays as they are, XML
        <tags><tag/>...</tags> as a list of dicts."""
        if self.fmt == "json":
            return doc
        return self._as_list(doc.get(tag) if isinstance(doc, dict) else None)

    # ---- the API ----

    def discovery(self):
        return self._request("GET", "discovery.%s" % self.fmt, None)

    def get_service_list(self):
        return self._records(self._get("services.%s" % self.fmt), "service")

    def get_service_meta_info(self, code):
        doc = self._get("services/%s.%s" % (code, self.fmt))
        if self.fmt == "xml":
            attrs = doc.get("attributes") or {}
            doc["attributes"] = self._as_list(attrs.get("attribute") if isinstance(attrs, dict) else None)
            for a in doc["attributes"]:
                vals = a.get("values") or {}
                a["values"] = self._as_list(vals.get("value") if isinstance(vals, dict) else None)
        return doc

    def send_service_request(self, service_code, lat=None, lon=None, address_string=None,
                             address_id=None, description=None, media_url=None, email=None,
                             first_name=None, last_name=None, phone=None, device_id=None,
                             account_id=None, attributes=None):
        """POSTs a request; returns the service_request_id (resolving a token
        through tokens/{token} when that is all the endpoint returned)."""
        params = {"service_code": service_code, "description": description,
                  "first_name": first_name, "last_name": last_name}
        for k, v in (("lat", lat), ("long", lon), ("address_string", address_string),
                     ("address_id", address_id), ("media_url", media_url), ("email", email),
                     ("phone", phone), ("device_id", device_id), ("account_id", account_id)):
            if v is not None:
                params[k] = v
        for code, value in (attributes or {}).items():
            if isinstance(value, list):
                params["attribute[%s][]" % code] = value
            else:
                params["attribute[%s]" % code] = value
        doc = self._request("POST", "requests.%s" % self.fmt, params)
        rec = self._records(doc, "request")[0]
        if rec.get("service_request_id"):
            return rec["service_request_id"], rec
        if rec.get("token"):
            return self.get_service_request_id_from_token(rec["token"]), rec
        raise ValueError("neither service_request_id nor token in %r" % (doc,))

    def get_service_request_id_from_token(self, token):
        recs = self._records(self._get("tokens/%s.%s" % (token, self.fmt)), "request")
        return recs[0].get("service_request_id") if recs else None

    def get_service_requests(self, report_ids=None, **filters):
        params = dict(filters)
        if report_ids:
            params["service_request_id"] = ",".join(str(i) for i in report_ids)
        return self._records(self._get("requests.%s" % self.fmt, params), "request")

    def get_service_request(self, srid):
        recs = self._records(self._get("requests/%s.%s" % (srid, self.fmt)), "request")
        return recs[0] if recs else None
