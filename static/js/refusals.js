// An htmx request the server refused or failed (htmx swaps in only 2xx answers), or one that never
// reached it, says why at the top of the page: the reason in the answer (the 403 page's alert, a form's
// error) or its status.
function showRefusal(text) {
  let notice = document.getElementById("request-refused");
  if (!notice) {
    notice = document.createElement("p");
    notice.id = "request-refused";
    notice.className = "notice notice-error";
    notice.setAttribute("role", "alert");
    document.getElementById("main").prepend(notice);
  }
  notice.textContent = text;
}

document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  const answer = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
  const found = answer.querySelector("main [role=alert], main .notice, main .errorlist");
  const reason = (found ? found.textContent : answer.body.textContent || "").trim().replace(/\s+/g, " ");
  const status = xhr.status === 403 ? "Not allowed" : `The server answered ${xhr.status}`;
  showRefusal(reason ? `${status}: ${reason.slice(0, 300)}` : `${status}.`);
});

document.addEventListener("htmx:sendError", () => showRefusal("The server could not be reached; try again."));
