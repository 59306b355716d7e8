// The public API, as the page calls it: relative URLs (so the service may sit under a path
// prefix) and the admin token, kept for the tab's lifetime only.

const TOKEN_KEY = "stellar-reconciler.admin-token";

export const adminToken = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// {ok, status, body} or {ok: false, status, message}; message is the API's own "error" text.
// The token goes along unless `anonymous` asks what a caller without one would get.
export async function call(method, path, body, { anonymous = false } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const token = anonymous ? "" : adminToken.get();
  if (token) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    return { ok: false, status: 0, message: `the service did not answer (${error.message})` };
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): the status line below says enough.
  }
  if (!response.ok) {
    const message =
      payload && typeof payload.error === "string" ? payload.error : response.statusText;
    return { ok: false, status: response.status, message };
  }
  return { ok: true, status: response.status, body: payload };
}

// The stream's URL. EventSource cannot send headers, so when reads need a token (READ_TOKEN
// is set) the token, sent as a header, buys a short-lived ticket and only the ticket goes in
// the URL: a token never does, since proxies and browser histories keep URLs.
export async function streamUrl(readNeedsToken) {
  if (!readNeedsToken || !adminToken.get()) return "api/stream";
  const result = await call("POST", "api/stream/ticket");
  // Without a ticket the bare stream is refused, and that refusal is explained on the page.
  return result.ok ? `api/stream?ticket=${encodeURIComponent(result.body.ticket)}` : "api/stream";
}

// An explanation page's URL for a link about to be followed. A followed link sends no
// Authorization header either, so when reads need a token the token, sent as a header, buys
// a short-lived ticket that opens explanation pages only, and the ticket goes in the URL.
export async function explainUrl(href, readNeedsToken) {
  if (!readNeedsToken || !adminToken.get()) return href;
  const result = await call("POST", "api/explain/ticket");
  // Without a ticket the page answers 401 with the reason, which is the most we can show.
  return result.ok ? `${href}?ticket=${encodeURIComponent(result.body.ticket)}` : href;
}
