// The page: upload a CSV, follow the job live, show every image before and after.
// Plain ES module, no build step; every call goes to the same JSON API as curl.

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
let stream = null;

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

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  if (!response.ok) throw Object.assign(new Error(body.detail || "request failed"), { body });
  return body;
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
  if ($("webhook").value.trim()) form.append("webhook_url", $("webhook").value.trim());
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

function follow(id) {
  if (stream) stream.close();
  $("results").hidden = true;
  $("downloads").hidden = true;
  $("summary").textContent = "";
  stream = new EventSource(`/api/events/${encodeURIComponent(id)}`);
  stream.addEventListener("progress", (e) => showStatus(JSON.parse(e.data)));
  stream.addEventListener("done", (e) => {
    stream.close();
    stream = null;
    showStatus(JSON.parse(e.data));
    showResults(id).catch(showProblems);
    loadRecent();
  });
  stream.addEventListener("error", () => {
    // A job id that does not exist answers 404 and the browser gives up: say so.
    if (stream && stream.readyState === EventSource.CLOSED) {
      api(`/api/status/${encodeURIComponent(id)}`).then(showStatus).catch(showProblems);
    }
  });
}

function imagePair(image) {
  const pair = el("div", { class: "pair" },
    el("figure", {}, el("img", { src: image.input_url, alt: "input", loading: "lazy" }),
      el("figcaption", {}, `in ${bytes(image.bytes_in)}`)),
    el("figure", {}, image.output_url
      ? el("img", { src: image.output_url, alt: "output", loading: "lazy" }) : null,
      el("figcaption", {}, image.output_url
        ? `out ${bytes(image.bytes_out)} · ${image.width}×${image.height}` : image.status)));
  if (image.error) {
    pair.append(el("div", { class: "error" }, `${image.error.code}: ${image.error.message}`));
  } else if (image.bytes_in && image.bytes_out) {
    const saving = 100 * (1 - image.bytes_out / image.bytes_in);
    pair.append(el("div", { class: "saving" }, `saved ${saving.toFixed(0)}%`));
  }
  return pair;
}

async function showResults(id) {
  const details = await api(`/api/details/${encodeURIComponent(id)}?limit=200`);
  const rows = details.products.map((p) => el("tr", {},
    el("td", {}, p.serial_number), el("td", {}, p.product_name),
    el("td", {}, el("div", { class: "pairs" }, ...p.images.map(imagePair)))));
  $("results").tBodies[0].replaceChildren(...rows);
  $("results").hidden = rows.length === 0;
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
$("upload").addEventListener("submit", upload);
window.addEventListener("hashchange", route);
setUpDrop();
route();
loadRecent().catch(() => {});
