/* SigV4 for the Stagecoach API in the browser (API Gateway's IAM authorizer, service execute-api).
 * WebCrypto (SubtleCrypto) HMAC-SHA256; no dependencies. The same canonical request as botocore's
 * SigV4Auth (tests/browser/test_dashboard.py compares both on the same request).
 */
(function (global) {
  'use strict';
  const encoder = new TextEncoder();

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function sha256Hex(text) {
    return hex(await crypto.subtle.digest('SHA-256', encoder.encode(text)));
  }

  async function hmac(key, text) {
    const raw = typeof key === 'string' ? encoder.encode(key) : key;
    const imported = await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return new Uint8Array(await crypto.subtle.sign('HMAC', imported, encoder.encode(text)));
  }

  /* RFC 3986 percent-encoding of everything but unreserved characters and those in `safe`. */
  function quote(text, safe) {
    let out = '';
    for (const byte of encoder.encode(text)) {
      const c = String.fromCharCode(byte);
      if (/[A-Za-z0-9_.~-]/.test(c) || safe.includes(c)) out += c;
      else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
    }
    return out;
  }

  /* Encode a query parameter name or value the way the signature expects it on the wire. */
  function encodeParam(text) {
    return quote(String(text), '');
  }

  function amzDate(now) {
    return now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  }

  function regionOf(hostname) {
    const match = /^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/.exec(hostname.toLowerCase());
    return match ? match[1] : null;
  }

  /* Headers to add to `method url` with `body` (a string) and `headers` (those sent and signed):
   * X-Amz-Date, X-Amz-Security-Token (temporary credentials) and Authorization. */
  async function sign(request) {
    const url = new URL(request.url, global.location ? global.location.href : undefined);
    const now = request.now || new Date();
    const date = amzDate(now);
    const day = date.slice(0, 8);
    const region = request.region || regionOf(url.hostname);
    if (!region) throw new Error('cannot tell the region of ' + url.host);
    const service = request.service || 'execute-api';
    const added = { 'X-Amz-Date': date };
    if (request.sessionToken) added['X-Amz-Security-Token'] = request.sessionToken;
    const all = Object.assign({}, request.headers || {}, added);
    const canonical = {};
    for (const [name, value] of Object.entries(all)) {
      if (value === undefined || value === null) continue;
      canonical[name.toLowerCase()] = String(value).trim().split(/\s+/).join(' ');
    }
    canonical.host = url.host;
    const names = Object.keys(canonical).sort();
    const query = url.search.slice(1);
    const canonicalQuery = query
      ? query.split('&').map((pair) => { const i = pair.indexOf('='); return i < 0 ? [pair, ''] : [pair.slice(0, i), pair.slice(i + 1)]; })
        .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
        .map(([k, v]) => k + '=' + v).join('&')
      : '';
    const canonicalRequest = [
      request.method.toUpperCase(),
      quote(url.pathname || '/', '/~'),
      canonicalQuery,
      names.map((n) => n + ':' + canonical[n]).join('\n') + '\n',
      names.join(';'),
      await sha256Hex(request.body || ''),
    ].join('\n');
    const scope = [day, region, service, 'aws4_request'].join('/');
    const toSign = ['AWS4-HMAC-SHA256', date, scope, await sha256Hex(canonicalRequest)].join('\n');
    let key = await hmac('AWS4' + request.secretAccessKey, day);
    key = await hmac(key, region);
    key = await hmac(key, service);
    key = await hmac(key, 'aws4_request');
    const signature = hex(await hmac(key, toSign));
    added.Authorization = 'AWS4-HMAC-SHA256 Credential=' + request.accessKeyId + '/' + scope +
      ', SignedHeaders=' + names.join(';') + ', Signature=' + signature;
    return added;
  }

  global.StagecoachSigV4 = { sign, encodeParam, regionOf };
})(window);
