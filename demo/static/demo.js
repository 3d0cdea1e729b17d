// The demonstration page's script (app/templates/demo.html): served by nginx
// alone, under a content-hashed name. A fork deletes it.
document.addEventListener("DOMContentLoaded", () => {
  const target = document.getElementById("served-by");
  if (target) {
    target.textContent = `script loaded from ${document.currentScript ? document.currentScript.src : "a hashed URL"}`;
  }
});
