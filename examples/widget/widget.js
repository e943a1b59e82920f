// Reusely trade-in widget: a mail-in offer form that talks to reusely-gateway.
//
// ============================================================================
// YOUR GATEWAY: the one thing to set. The origin of your reusely-gateway as
// your shop's pages reach it (https, no path). The gateway holds the Reusely
// keys; this script sends none. (serve.py --gateway rewrites this line as it
// serves the file, for local demos.)
const GATEWAY = "http://127.0.0.1:8080";
// ============================================================================
//
// The gateway mirrors Reusely's URL space, so this script calls Reusely's own
// paths. Put <div id="reusely-trade-in"></div>, widget.css and this file on
// the page; nothing else is needed (no build step, no CDN).

(function () {
  "use strict";

  const CATALOG = "/api/v2/public/catalog";
  const MAIL_IN = "/api/v3/public/offer/mail-in";
  const MAX_PAGES = 20;
  const PAYOUT_METHODS = [
    ["paypal", "PayPal"],
    ["venmo", "Venmo"],
    ["check", "Paper check"],
    ["amazon_gift_card", "Amazon gift card"],
  ];

  // --- talking to the gateway ------------------------------------------------

  class GatewayError extends Error {
    constructor(kind, status, detail, retryAfter) {
      super(kind);
      this.kind = kind; // network | forbidden | limited | invalid | server | other
      this.status = status;
      this.detail = detail;
      this.retryAfter = retryAfter; // seconds, or null
    }
  }

  // Retry-After is whole seconds or an HTTP date; null when absent or unreadable.
  function retryAfterSeconds(value) {
    if (!value) {
      return null;
    }
    if (/^\d+$/.test(value.trim())) {
      return parseInt(value, 10);
    }
    const when = Date.parse(value);
    return Number.isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
  }

  async function call(path, options) {
    let response;
    try {
      response = await fetch(GATEWAY + path, Object.assign({ credentials: "omit" }, options));
    } catch (err) {
      // A refused CORS check looks exactly like a network failure to a page.
      throw new GatewayError("network", 0, String(err), null);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (response.ok) {
      return body;
    }
    const status = response.status;
    // 429 is the same to a shopper whoever said it: the gateway's own limit
    // (rate_limited), Reusely's cooldown kept by the gateway
    // (upstream_rate_limited), or Reusely's 429 itself.
    const kind =
      status === 403 ? "forbidden"
        : status === 429 ? "limited"
        : status === 400 || status === 422 ? "invalid"
        : status >= 500 ? "server"
        : "other";
    throw new GatewayError(kind, status, body, retryAfterSeconds(response.headers.get("Retry-After")));
  }

  // --- one checkout attempt ---------------------------------------------------

  // Automatic retries of one attempt: a dropped connection, the gateway still
  // handling the first try (409), or a passing upstream error.
  const RETRIES = 2;
  const RETRYABLE = new Set([409, 502, 503, 504]);

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) {
      return window.crypto.randomUUID();
    }
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function pause(seconds) {
    return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }

  // One Idempotency-Key per attempt, the same on each automatic retry: if a try
  // did reach Reusely before its answer was lost, the retry gets that answer
  // back (Idempotent-Replayed: true) instead of creating a second offer and
  // using a second of the shopper's five checkouts an hour.
  async function checkout(payload) {
    const key = newKey();
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await call(MAIL_IN, {
          method: "POST",
          headers: { "Content-Type": "application/json", "Idempotency-Key": key },
          body: payload,
        });
      } catch (err) {
        const retryable = err instanceof GatewayError && attempt < RETRIES
          && (err.kind === "network" || RETRYABLE.has(err.status));
        if (!retryable) {
          throw err;
        }
        await pause(err.retryAfter !== null ? Math.min(err.retryAfter, 5) : attempt + 1);
      }
    }
  }

  async function list(path) {
    // Catalog lists come in a Laravel-like paginator under result.data.
    const items = [];
    for (let page = 1; page <= MAX_PAGES; page += 1) {
      const sep = path.includes("?") ? "&" : "?";
      const body = await call(path + sep + "page=" + page);
      const result = (body && body.result) || {};
      items.push(...(result.data || []));
      if (!result.last_page || page >= result.last_page) {
        break;
      }
    }
    return items;
  }

  function query(params) {
    return Object.entries(params)
      .map(([k, v]) => encodeURIComponent(k).replace(/%5B/g, "[").replace(/%5D/g, "]")
        + "=" + encodeURIComponent(v))
      .join("&");
  }

  // --- friendly messages -----------------------------------------------------

  function waitText(seconds) {
    if (seconds === null) {
      return "Please try again later.";
    }
    if (seconds < 90) {
      const s = Math.max(1, seconds);
      return "Please try again in " + s + (s === 1 ? " second." : " seconds.");
    }
    if (seconds < 5400) {
      return "Please try again in about " + Math.ceil(seconds / 60) + " minutes.";
    }
    const hours = Math.ceil(seconds / 3600);
    return "Please try again in about " + hours + (hours === 1 ? " hour." : " hours.");
  }

  function validationText(detail) {
    if (detail && detail.errors) {
      return Object.values(detail.errors).flat().join(" ");
    }
    if (detail && detail.error && detail.error.message) {
      return detail.error.message;
    }
    return "Please check the form and try again.";
  }

  function explain(err) {
    switch (err.kind) {
      case "limited":
        return "We have received several offer requests in a short time. "
          + waitText(err.retryAfter);
      case "forbidden":
      case "network":
        return "Sorry, trade-in offers are not available on this website right now. "
          + "The trade-in service refused this page or could not be reached.";
      case "invalid":
        return validationText(err.detail);
      case "server":
        return "The trade-in service is having trouble right now (error " + err.status + "). "
          + "Please try again in a few minutes.";
      default:
        return "Something went wrong (error " + err.status + "). Please try again.";
    }
  }

  function money(amount) {
    const value = Number(amount);
    return "$" + (Number.isInteger(value) ? String(value) : value.toFixed(2));
  }

  // --- building blocks -------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") {
        node.textContent = v;
      } else {
        node.setAttribute(k, v);
      }
    }
    for (const child of children || []) {
      node.append(child);
    }
    return node;
  }

  function field(label, control, wide) {
    return el("label", { class: "rw-field" + (wide ? " rw-wide" : "") },
      [el("span", { class: "rw-label", text: label }), control]);
  }

  function step(number, title, children) {
    return el("fieldset", { class: "rw-step" }, [
      el("legend", {}, [el("span", { class: "rw-step-number", text: String(number) }), title]),
      ...children,
    ]);
  }

  function fillSelect(select, placeholder, options) {
    select.replaceChildren(el("option", { value: "", text: placeholder }));
    for (const [value, text] of options) {
      select.append(el("option", { value: value, text: text }));
    }
    select.disabled = options.length === 0;
  }

  // --- the widget ------------------------------------------------------------

  function mount(root) {
    const ui = {
      category: el("select", { name: "category", "data-testid": "category" }),
      device: el("select", { name: "device", "data-testid": "device" }),
      model: el("select", { name: "model", "data-testid": "model" }),
      size: el("select", { name: "size", "data-testid": "size" }),
      conditions: el("div", { class: "rw-conditions", role: "radiogroup",
        "aria-label": "Condition", "data-testid": "conditions" }),
      firstName: el("input", { name: "first_name", autocomplete: "given-name", required: "" }),
      lastName: el("input", { name: "last_name", autocomplete: "family-name", required: "" }),
      email: el("input", { name: "email", type: "email", autocomplete: "email", required: "" }),
      payout: el("select", { name: "payout_method", "data-testid": "payout" }),
      submit: el("button", { type: "submit", class: "rw-submit", text: "Get my offer",
        disabled: "" }),
      status: el("p", { class: "rw-status", role: "status", "aria-live": "polite",
        "data-testid": "status", "data-state": "idle" }),
      offer: el("section", { class: "rw-offer", "data-testid": "offer", hidden: "",
        "aria-live": "polite" }),
    };
    const state = { devices: [], productId: null, productName: "", prices: {}, busy: false };

    fillSelect(ui.payout, "Choose how to be paid", PAYOUT_METHODS);
    for (const name of ["category", "device", "model", "size"]) {
      fillSelect(ui[name], "—", []);
    }

    const form = el("form", { class: "rw-form", novalidate: "" }, [
      el("header", { class: "rw-head" }, [
        el("h2", { text: "Trade in your device" }),
        el("p", { text: "Free prepaid shipping. Paid within 2 days of arrival." }),
      ]),
      step(1, "Your device", [
        el("div", { class: "rw-grid" }, [
          field("Category", ui.category), field("Device", ui.device),
          field("Model", ui.model), field("Storage", ui.size),
        ]),
      ]),
      step(2, "Condition", [ui.conditions]),
      step(3, "Your details", [
        el("div", { class: "rw-grid" }, [
          field("First name", ui.firstName), field("Last name", ui.lastName),
          field("Email", ui.email, true), field("Payout method", ui.payout, true),
        ]),
      ]),
      ui.submit,
      ui.status,
    ]);
    root.replaceChildren(el("div", { class: "rw-widget" }, [form, ui.offer]));

    function show(stateName, text) {
      ui.status.dataset.state = stateName;
      ui.status.textContent = text;
    }

    function fail(err) {
      show(err.kind === "network" ? "forbidden" : err.kind, explain(err));
    }

    function selectedCondition() {
      const checked = ui.conditions.querySelector("input:checked");
      return checked ? parseInt(checked.value, 10) : null;
    }

    function refreshSubmit() {
      const condition = selectedCondition();
      ui.submit.disabled = state.busy || !(state.productId && condition);
      ui.submit.textContent = state.busy ? "Sending…"
        : condition ? "Get my offer: " + money(state.prices[condition]) : "Get my offer";
    }

    function clearConditions() {
      ui.conditions.replaceChildren(el("p", { class: "rw-hint", "data-testid": "conditions-hint",
        text: "Choose your device and its storage above to see what it is worth "
          + "in each condition." }));
      state.productId = null;
      state.prices = {};
      refreshSubmit();
    }

    function setBusy(busy) {
      state.busy = busy;
      form.setAttribute("aria-busy", busy ? "true" : "false");
      for (const fieldset of form.querySelectorAll("fieldset")) {
        fieldset.disabled = busy;
      }
      refreshSubmit();
    }

    async function load(action) {
      show("loading", "Loading…");
      try {
        await action();
        show("idle", "");
      } catch (err) {
        if (!(err instanceof GatewayError)) {
          throw err;
        }
        fail(err);
      }
    }

    ui.category.addEventListener("change", () => load(async () => {
      fillSelect(ui.device, "—", []);
      fillSelect(ui.model, "—", []);
      fillSelect(ui.size, "—", []);
      clearConditions();
      if (!ui.category.value) {
        return;
      }
      state.devices = await list(CATALOG + "/category-brand/"
        + encodeURIComponent(ui.category.value));
      fillSelect(ui.device, "Choose a device",
        state.devices.map((d, i) => [String(i), d.brand.name + " " + d.name]));
    }));

    ui.device.addEventListener("change", () => load(async () => {
      fillSelect(ui.model, "—", []);
      fillSelect(ui.size, "—", []);
      clearConditions();
      const device = state.devices[parseInt(ui.device.value, 10)];
      if (!device) {
        return;
      }
      const models = await list(CATALOG + "/model-device/"
        + encodeURIComponent(device.brand.slug) + "/" + encodeURIComponent(device.slug));
      fillSelect(ui.model, "Choose a model", models.map((m) => [m.slug, m.name]));
    }));

    ui.model.addEventListener("change", () => load(async () => {
      fillSelect(ui.size, "—", []);
      clearConditions();
      if (!ui.model.value) {
        return;
      }
      const device = state.devices[parseInt(ui.device.value, 10)];
      const body = await call(CATALOG + "/spec?"
        + query({ brand: device.brand.slug, model: ui.model.value }));
      const choices = (body.result.size && body.result.size.choices) || [];
      fillSelect(ui.size, "Choose storage", choices.map((c) => [c.slug, c.name]));
    }));

    ui.size.addEventListener("change", () => load(async () => {
      clearConditions();
      if (!ui.size.value) {
        return;
      }
      const device = state.devices[parseInt(ui.device.value, 10)];
      const body = await call(CATALOG + "/condition?" + query({
        brand: device.brand.slug,
        "spec[device]": device.slug,
        "spec[model]": ui.model.value,
        "spec[size]": ui.size.value,
      }));
      state.productId = body.result.product.product_id;
      state.productName = body.result.product.name || "";
      ui.conditions.replaceChildren();
      for (const c of body.result.conditions) {
        state.prices[c.id] = c.price;
        const radio = el("input", { type: "radio", name: "condition", value: String(c.id) });
        const terms = el("ul", {}, (c.terms.content || []).map((t) => el("li", { text: t })));
        ui.conditions.append(el("label", { class: "rw-condition" }, [
          radio,
          el("span", { class: "rw-condition-name", text: c.name }),
          el("span", { class: "rw-price", text: money(c.price) }),
          terms,
        ]));
      }
      refreshSubmit();
    }));

    ui.conditions.addEventListener("change", refreshSubmit);

    function showOffer(result, condition) {
      const conditionName = (ui.conditions.querySelector("input:checked + .rw-condition-name")
        || {}).textContent || "";
      ui.offer.replaceChildren(
        el("div", { class: "rw-offer-mark", "aria-hidden": "true", text: "✓" }),
        el("h2", { text: "Your offer is on its way" }),
        el("p", { class: "rw-offer-price", text: money(state.prices[condition]) }),
        el("p", { class: "rw-offer-device",
          text: [state.productName, conditionName].filter(Boolean).join(" · ") }),
        el("dl", { class: "rw-offer-ids" }, [
          el("dt", { text: "Offer number" }),
          el("dd", { "data-testid": "offer-id", text: String(result.offer_id) }),
          el("dt", { text: "Box" }),
          el("dd", { "data-testid": "box-id", text: String(result.box_id) }),
        ]),
        el("p", { text: "We have emailed " + ui.email.value.trim() + " a prepaid shipping "
          + "label. Pack your device, write the box number on the parcel and drop it off." }),
      );
      const again = el("button", { type: "button", class: "rw-again",
        text: "Trade in another device" });
      again.addEventListener("click", () => {
        ui.offer.hidden = true;
        form.hidden = false;
        show("idle", "");
        ui.category.focus();
      });
      ui.offer.append(again);
      ui.offer.dataset.offerId = String(result.offer_id);
      form.hidden = true;
      ui.offer.hidden = false;
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (state.busy) {
        return;
      }
      const missing = [
        [ui.firstName, "first name"], [ui.lastName, "last name"],
        [ui.email, "email"], [ui.payout, "payout method"],
      ].filter(([input]) => !input.value.trim()).map(([, name]) => name);
      if (missing.length) {
        show("invalid", "Please fill in your " + missing.join(", ") + ".");
        return;
      }
      const condition = selectedCondition();
      setBusy(true);
      show("loading", "Sending your offer…");
      try {
        const body = await checkout(JSON.stringify({
          first_name: ui.firstName.value.trim(),
          last_name: ui.lastName.value.trim(),
          email: ui.email.value.trim(),
          payout_method: ui.payout.value,
          offer_detail: [{ product_id: state.productId, condition_id: condition }],
          platform: "widget",
        }));
        show("success", "");
        showOffer(body.result, condition);
      } catch (err) {
        if (!(err instanceof GatewayError)) {
          throw err;
        }
        fail(err);
      } finally {
        setBusy(false);
      }
    });

    clearConditions();
    load(async () => {
      const categories = await list(CATALOG + "/categories");
      fillSelect(ui.category, "Choose a category", categories.map((c) => [c.slug, c.name]));
    }).then(() => {
      root.dataset.ready = "true";
    });
  }

  function start() {
    const root = document.getElementById("reusely-trade-in");
    if (root) {
      mount(root);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
