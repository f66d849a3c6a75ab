// Shows the SVG text the kernel sends; a click on a node tells the kernel which one.
function render({ model, el }) {
  el.classList.add("mf-svg-view");
  const picture = document.createElement("div");
  picture.className = "mf-picture";
  const details = document.createElement("div");
  details.className = "mf-details";
  el.append(picture, details);

  const paint = () => {
    picture.innerHTML = model.get("svg");
  };
  const showDetails = () => {
    details.innerHTML = model.get("details");
  };
  picture.addEventListener("click", (event) => {
    const node = event.target.closest("[data-node]");
    model.set("selected", node ? node.dataset.node : "");
    model.save_changes();
  });
  model.on("change:svg", paint);
  model.on("change:details", showDetails);
  paint();
  showDetails();
  return () => {
    model.off("change:svg", paint);
    model.off("change:details", showDetails);
  };
}

export default { render };
