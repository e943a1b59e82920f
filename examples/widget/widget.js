// Reusely trade-in widget: a mail-in offer form that talks to reusely-gateway.
//
// The gateway holds the Reusely keys and mirrors Reusely's URL space, so this
// script calls the same paths as Reusely's own API and sends no keys at all.
// Point it at your gateway here (serve.py --gateway rewrites this line):
const GATEWAY = "http://127.0.0.1:8080";

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
      this.retryAfter = retryAfter;
    }
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
    const retryAfter = parseInt(response.headers.get("Retry-After") || "", 10);
    const kind =
      status === 403 ? "forbidden"
        : status === 429 ? "limited"
        : status === 400 || status === 422 ? "invalid"
        : status >= 500 ? "server"
        : "other";
    throw new GatewayError(kind, status, body, Number.isFinite(retryAfter) ? retryAfter : null);
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
        return "You have requested several offers for this email in a short time. "
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

  // --- the form --------------------------------------------------------------

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

  function field(label, control) {
    return el("label", { class: "rw-field" }, [el("span", { text: label }), control]);
  }

  function fillSelect(select, placeholder, options) {
    select.replaceChildren(el("option", { value: "", text: placeholder }));
    for (const [value, text] of options) {
      select.append(el("option", { value: value, text: text }));
    }
    select.disabled = options.length === 0;
  }

  function mount(root) {
    const ui = {
      category: el("select", { name: "category", "data-testid": "category" }),
      device: el("select", { name: "device", "data-testid": "device" }),
      model: el("select", { name: "model", "data-testid": "model" }),
      size: el("select", { name: "size", "data-testid": "size" }),
      conditions: el("fieldset", { class: "rw-conditions", "data-testid": "conditions" }),
      firstName: el("input", { name: "first_name", autocomplete: "given-name", required: "" }),
      lastName: el("input", { name: "last_name", autocomplete: "family-name", required: "" }),
      email: el("input", { name: "email", type: "email", autocomplete: "email", required: "" }),
      payout: el("select", { name: "payout_method", "data-testid": "payout" }),
      submit: el("button", { type: "submit", text: "Get my offer", disabled: "" }),
      status: el("p", { class: "rw-status", role: "status", "aria-live": "polite",
        "data-testid": "status", "data-state": "idle" }),
    };
    const state = { devices: [], models: [], productId: null };

    fillSelect(ui.payout, "Choose how to be paid", PAYOUT_METHODS);
    for (const name of ["category", "device", "model", "size"]) {
      fillSelect(ui[name], "—", []);
    }
    ui.conditions.append(el("legend", { text: "Condition" }));

    const form = el("form", { class: "rw-form", novalidate: "" }, [
      el("h2", { text: "Trade in your device" }),
      field("Category", ui.category),
      field("Device", ui.device),
      field("Model", ui.model),
      field("Storage", ui.size),
      ui.conditions,
      field("First name", ui.firstName),
      field("Last name", ui.lastName),
      field("Email", ui.email),
      field("Payout method", ui.payout),
      ui.submit,
      ui.status,
    ]);
    root.replaceChildren(form);

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
      ui.submit.disabled = !(state.productId && selectedCondition());
    }

    function clearConditions() {
      ui.conditions.replaceChildren(el("legend", { text: "Condition" }));
      state.productId = null;
      refreshSubmit();
    }

    async function step(action) {
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

    ui.category.addEventListener("change", () => step(async () => {
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

    ui.device.addEventListener("change", () => step(async () => {
      fillSelect(ui.model, "—", []);
      fillSelect(ui.size, "—", []);
      clearConditions();
      const device = state.devices[parseInt(ui.device.value, 10)];
      if (!device) {
        return;
      }
      state.models = await list(CATALOG + "/model-device/"
        + encodeURIComponent(device.brand.slug) + "/" + encodeURIComponent(device.slug));
      fillSelect(ui.model, "Choose a model", state.models.map((m) => [m.slug, m.name]));
    }));

    ui.model.addEventListener("change", () => step(async () => {
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

    ui.size.addEventListener("change", () => step(async () => {
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
      for (const c of body.result.conditions) {
        const radio = el("input", { type: "radio", name: "condition", value: String(c.id) });
        const terms = el("ul", {}, (c.terms.content || []).map((t) => el("li", { text: t })));
        ui.conditions.append(el("label", { class: "rw-condition" }, [
          radio, el("strong", { text: c.name + " — $" + c.price }), terms,
        ]));
      }
      refreshSubmit();
    }));

    ui.conditions.addEventListener("change", refreshSubmit);

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const missing = [
        [ui.firstName, "first name"], [ui.lastName, "last name"],
        [ui.email, "email"], [ui.payout, "payout method"],
      ].filter(([input]) => !input.value.trim()).map(([, name]) => name);
      if (missing.length) {
        show("invalid", "Please fill in your " + missing.join(", ") + ".");
        return;
      }
      ui.submit.disabled = true;
      show("loading", "Sending your offer…");
      try {
        const body = await call(MAIL_IN, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            first_name: ui.firstName.value.trim(),
            last_name: ui.lastName.value.trim(),
            email: ui.email.value.trim(),
            payout_method: ui.payout.value,
            offer_detail: [{ product_id: state.productId, condition_id: selectedCondition() }],
            platform: "widget",
          }),
        });
        const result = body.result;
        show("success", "Thank you! Your offer number is " + result.offer_id
          + " (box " + result.box_id + "). We'll email you a prepaid shipping label.");
        ui.status.dataset.offerId = String(result.offer_id);
      } catch (err) {
        if (!(err instanceof GatewayError)) {
          throw err;
        }
        fail(err);
      } finally {
        refreshSubmit();
      }
    });

    step(async () => {
      const categories = await list(CATALOG + "/categories");
      fillSelect(ui.category, "Choose a category", categories.map((c) => [c.slug, c.name]));
      ui.category.disabled = false;
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
