// The test-mode fields write their parameters into the URL's query, so the URL
// field always shows exactly what the console will ask for.
export const TEST_MODE_FIELDS = "[data-param]";

// The URL with every field's parameter set (or removed when empty); other
// parameters are kept. `hello` is written bare: ?hello rather than ?hello=.
export function withTestModes(href, fields) {
  const url = new URL(href);
  for (const field of fields) {
    const name = field.dataset.param;
    url.searchParams.delete(name);
    if (field.type === "checkbox") {
      if (field.checked) url.searchParams.set(name, "");
    } else if (field.value.trim() !== "") {
      url.searchParams.set(name, field.value.trim());
    }
  }
  url.search = url.search.replace(/([?&])hello=(?=&|$)/, "$1hello");
  return url.href;
}

export const asksForHello = (href) => new URL(href).searchParams.has("hello");
