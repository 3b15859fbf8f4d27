// A form on its way shows it: the button that sent it is marked busy (app.css draws a spinner on it) and
// a second press does not send it again. htmx marks what it sends itself (the htmx-request class).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (event.defaultPrevented || form.matches("[hx-post], [hx-get]")) return;
  if (form.classList.contains("is-busy")) {
    event.preventDefault();
    return;
  }
  form.classList.add("is-busy");
  if (event.submitter) event.submitter.setAttribute("aria-busy", "true");
});

// Back to a page kept by the browser's cache: its forms are idle again.
window.addEventListener("pageshow", () => {
  for (const form of document.querySelectorAll("form.is-busy")) form.classList.remove("is-busy");
  for (const button of document.querySelectorAll('[aria-busy="true"]')) button.removeAttribute("aria-busy");
});
