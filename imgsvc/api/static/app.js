// The page: upload a CSV, follow the job live, show every image before and after.
// Plain ES module, no build step; every call goes to the same JSON API as curl.

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
let stream = null;
let shownDetails = null;  // the details last shown, redrawn when another size is picked

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(2)} MB`;
}

// With IMGSVC_API_KEYS set the API answers 401 until a key is sent; the page asks for one
// and keeps it in localStorage, so it is asked once per browser.
const KEY_ITEM = "imgsvc.apiKey";

function authHeaders() {
  const key = localStorage.getItem(KEY_ITEM);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey(detail) {
  $("key-form").hidden = false;
  $("key-message").textContent = detail || "This service needs an API key.";
  $("api-key").focus();
}

async function authorised(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...options.headers } });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    askForKey(body.detail);
    throw Object.assign(new Error(body.detail || "an API key is needed"), { body, unauthorised: true });
  }
  return response;
}

async function api(path, options = {}) {
  const response = await authorised(path, options);
  const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  if (!response.ok) throw Object.assign(new Error(body.detail || "request failed"), { body });
  return body;
}

function saveKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  localStorage.setItem(KEY_ITEM, key);
  $("api-key").value = "";
  $("key-form").hidden = true;
  $("problems").hidden = true;
  route();
  loadRecent().catch(() => {});
}

function showProblems(error) {
  const box = $("problems");
  box.replaceChildren(el("strong", {}, error.message));
  const problems = (error.body && error.body.errors) || [];
  if (problems.length) {
    box.append(el("ul", {}, ...problems.map((p) =>
      el("li", {}, [p.line && `Line ${p.line}`, p.column].filter(Boolean).concat(p.message).join(": ")))));
  }
  box.hidden = false;
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  $("problems").hidden = true;
  if (!file) {
    showProblems(new Error("Choose a CSV file first."));
    return;
  }
  const form = new FormData();
  form.append("file", file);
  form.append("quality", $("quality").value);
  form.append("format", $("format").value);
  form.append("progressive", String($("progressive").checked));
  form.append("reuse", String(!$("no-reuse").checked));
  if ($("webhook").value.trim()) form.append("webhook_url", $("webhook").value.trim());
  if ($("sizes").value.trim()) form.append("sizes", $("sizes").value.trim());
  $("submit").disabled = true;
  try {
    const answer = await api("/api/upload", { method: "POST", body: form });
    location.hash = `job=${answer.request_id}`;
  } catch (error) {
    showProblems(error);
  } finally {
    $("submit").disabled = false;
  }
}

function showStatus(status) {
  $("job").hidden = false;
  $("job-id").textContent = status.request_id;
  $("job-state").textContent = status.status;
  $("job-state").className = `state ${status.status}`;
  $("progress").value = status.progress.percentage;
  $("job-message").textContent = status.message;
}

// EventSource cannot send an Authorization header, so the event stream is read with fetch().
function follow(id) {
  if (stream) stream.abort();
  $("results").hidden = true;
  $("size-picker").hidden = true;
  $("size-pick").replaceChildren();
  $("downloads").hidden = true;
  $("summary").textContent = "";
  const current = new AbortController();
  stream = current;
  readEvents(id, current).catch((error) => {
    if (error.name !== "AbortError" && !error.unauthorised) showProblems(error);
  });
}

async function readEvents(id, current) {
  const path = `/api/events/${encodeURIComponent(id)}`;
  const response = await authorised(path, { signal: current.signal });
  if (!response.ok) {  // an unknown id: say so in the page
    const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
    throw Object.assign(new Error(body.detail || "request failed"), { body });
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (onEvent(id, parseEvent(block))) return;
    }
  }
  // The stream broke before `done` (a restart, a proxy): reconnect, as EventSource would.
  if (stream === current) setTimeout(() => { if (stream === current) follow(id); }, 2000);
}

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { name, data: data.join("\n") };
}

// Handles one event; true once the stream is over.
function onEvent(id, event) {
  if (event.name === "progress") showStatus(JSON.parse(event.data));
  if (event.name === "error") showProblems(new Error(JSON.parse(event.data).detail));
  if (event.name !== "done") return event.name === "error";
  stream = null;
  showStatus(JSON.parse(event.data));
  showResults(id).catch(showProblems);
  loadRecent().catch(() => {});
  return true;
}

// The output shown for an image: the main one, or the rendition of the size picked.
function pickedOutput(image, size) {
  if (!size) return image;
  const rendition = image.renditions.find((r) => r.size === size);
  return rendition || { output_url: null, bytes_out: null };
}

function imagePair(image, size) {
  const output = pickedOutput(image, size);
  const pair = el("div", { class: "pair" },
    el("figure", {}, el("img", { src: image.input_url, alt: "input", loading: "lazy" }),
      el("figcaption", {}, `in ${bytes(image.bytes_in)}`)),
    el("figure", {}, output.output_url
      ? el("img", { src: output.output_url, alt: "output", loading: "lazy" }) : null,
      el("figcaption", {}, output.output_url
        ? `out ${bytes(output.bytes_out)} · ${output.width}×${output.height}` : image.status)));
  if (image.error) {
    pair.append(el("div", { class: "error" }, `${image.error.code}: ${image.error.message}`));
  } else if (image.bytes_in && output.bytes_out) {
    const saving = 100 * (1 - output.bytes_out / image.bytes_in);
    pair.append(el("div", { class: "saving" }, `saved ${saving.toFixed(0)}%`));
  }
  return pair;
}

// A job with sizes offers each of them beside the main output in the before/after view.
function setUpSizePicker(sizes) {
  const picker = $("size-pick");
  const choices = [["", "main output"], ...sizes.map((s) => [String(s), `${s} px`])];
  if (picker.options.length !== choices.length) {
    picker.replaceChildren(...choices.map(([value, label]) => el("option", { value }, label)));
  }
  $("size-picker").hidden = sizes.length === 0;
}

function drawPairs() {
  const size = Number($("size-pick").value) || null;
  const rows = shownDetails.products.map((p) => el("tr", {},
    el("td", {}, p.serial_number), el("td", {}, p.product_name),
    el("td", {}, el("div", { class: "pairs" }, ...p.images.map((i) => imagePair(i, size))))));
  $("results").tBodies[0].replaceChildren(...rows);
  $("results").hidden = rows.length === 0;
}

async function showResults(id) {
  const details = await api(`/api/details/${encodeURIComponent(id)}?limit=200`);
  shownDetails = details;
  setUpSizePicker(details.options.sizes);
  drawPairs();
  let bytesIn = 0, bytesOut = 0;
  for (const p of details.products) {
    for (const i of p.images) if (i.bytes_out) { bytesIn += i.bytes_in; bytesOut += i.bytes_out; }
  }
  const shown = details.products.length < details.progress.total_products
    ? ` Showing the first ${details.products.length} products.` : "";
  $("summary").textContent = bytesIn
    ? `${bytes(bytesIn)} in, ${bytes(bytesOut)} out: ${(100 * (1 - bytesOut / bytesIn)).toFixed(0)}% smaller.${shown}`
    : shown;
  if (TERMINAL.has(details.status)) {
    $("download-csv").href = `/api/download/${id}`;
    $("download-zip").href = `/api/archive/${id}`;
    $("downloads").hidden = details.status === "failed" && !details.progress.processed_images;
  }
}

// A link cannot carry the Authorization header: with a key, the file is fetched with it and
// handed to the browser as a blob. Without one the plain link streams straight to disk.
async function download(event) {
  if (!localStorage.getItem(KEY_ITEM)) return;
  event.preventDefault();
  const link = event.currentTarget;
  try {
    const response = await authorised(link.href);
    if (!response.ok) throw new Error(`the download failed: HTTP ${response.status}`);
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = (disposition.match(/filename="?([^";]+)"?/) || [])[1] || "download";
    const url = URL.createObjectURL(await response.blob());
    const save = el("a", { href: url, download: name });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    if (!error.unauthorised) showProblems(error);
  }
}

async function loadRecent() {
  const list = await api("/api/jobs?limit=10");
  const items = list.jobs.map((job) => el("li", {},
    el("a", { href: `#job=${job.request_id}` }, job.request_id.slice(0, 12)),
    el("span", { class: `state ${job.status}` }, job.status),
    el("span", { class: "muted" }, `${job.progress.total_images} images · ${job.created_at.replace("T", " ").slice(0, 19)}`)));
  $("recent").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "none yet")]));
}

function route() {
  const match = location.hash.match(/^#job=([\w-]+)$/);
  if (match) follow(match[1]);
}

function setUpDrop() {
  const drop = $("drop");
  const label = () => {
    const file = $("file").files[0];
    $("drop-text").textContent = file ? `${file.name} (${bytes(file.size)})` : "Drop a CSV here or click to pick one";
  };
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) { $("file").files = e.dataTransfer.files; label(); }
  });
  $("file").addEventListener("change", label);
}

$("quality").addEventListener("input", () => { $("quality-value").textContent = $("quality").value; });
// Progressive is a JPEG choice: the other formats have no such mode.
$("format").addEventListener("change", () => {
  $("progressive").disabled = $("format").value !== "jpeg";
  if ($("progressive").disabled) $("progressive").checked = false;
});
$("size-pick").addEventListener("change", drawPairs);
$("upload").addEventListener("submit", upload);
$("key-form").addEventListener("submit", saveKey);
$("download-csv").addEventListener("click", download);
$("download-zip").addEventListener("click", download);
window.addEventListener("hashchange", route);
setUpDrop();
route();
loadRecent().catch(() => {});
