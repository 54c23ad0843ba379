// Add-domain page: say whether the chosen region and live center need an ICP
// filing, by the rule the server applies (domains.models.icp_filing_required):
// only acceleration outside the Chinese mainland with a live center outside it
// needs none. The form carries the mainland live centers as data attributes.
(function () {
  "use strict";
  const form = document.getElementById("add-domain-form");
  if (!form) return;
  const mainland = new Set((form.dataset.mainlandLiveCenters || "").split(/\s+/).filter(Boolean));
  const icpFreeRegion = form.dataset.icpFreeRegion;
  const region = form.elements.namedItem("region");
  const liveCenter = form.elements.namedItem("live_center");
  const required = document.getElementById("icp-required");
  const notRequired = document.getElementById("icp-not-required");

  function update() {
    const needed = !(region.value === icpFreeRegion && !mainland.has(liveCenter.value));
    required.hidden = !needed;
    notRequired.hidden = needed;
  }

  region.addEventListener("change", update);
  liveCenter.addEventListener("change", update);
  update();
})();
