// Conditions on htmx pollers. htmx's own trigger filters ("every 2s [expression]") are run with eval,
// which the Content-Security-Policy refuses; a poller says its condition in data attributes instead:
//   data-poll                 poll only while the page is visible
//   data-poll-if="ID"         and only while the checkbox ID is checked
document.addEventListener("htmx:beforeRequest", (event) => {
  const poller = event.detail.elt;
  if (!poller.hasAttribute("data-poll")) return;
  const toggle = poller.dataset.pollIf ? document.getElementById(poller.dataset.pollIf) : null;
  if (document.visibilityState !== "visible" || (toggle && !toggle.checked)) event.preventDefault();
});
