// Layout problems a person would notice; run by tests/browser/test_browser_layout.py.
([wide, headerMax]) => {
  const problems = [];
  const doc = document.documentElement;
  const vw = doc.clientWidth;
  if (doc.scrollWidth > vw + 1) problems.push(`page scrolls sideways: ${doc.scrollWidth} > ${vw}`);
  const bar = document.querySelector(".topbar");
  if (bar.getBoundingClientRect().height > headerMax) {
    problems.push(`header is ${Math.round(bar.getBoundingClientRect().height)} px tall`);
  }
  const visible = (el) => el.offsetParent !== null && el.getClientRects().length > 0;
  for (const el of bar.querySelectorAll("a, button, select")) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.left < -1 || r.right > vw + 1) {
      problems.push(`header item "${el.textContent.trim()}" is off screen (${Math.round(r.left)}..${Math.round(r.right)})`);
    }
  }
  const nav = bar.querySelector(".nav");
  if (nav && visible(nav) && nav.scrollWidth > nav.clientWidth + 1) {
    problems.push(`navigation overflows: ${nav.scrollWidth} > ${nav.clientWidth}`);
  }
  document.querySelectorAll("main table").forEach((table, i) => {
    const name = `table ${i + 1} (${(table.querySelector("th") || {}).textContent || ""})`;
    const wrap = table.parentElement;
    if (!wrap.classList.contains("table-wrap")) { problems.push(`${name} has no scroll box`); return; }
    const box = wrap.getBoundingClientRect();
    const card = wrap.closest(".card") || document.querySelector("main");
    const outer = card.getBoundingClientRect();
    if (box.right > outer.right + 1 || box.left < outer.left - 1) problems.push(`${name} sticks out of its card`);
    if (table.scrollWidth > wrap.clientWidth + 1) {
      if (wide) problems.push(`${name} is clipped: ${table.scrollWidth} > ${wrap.clientWidth}`);
      if (!["auto", "scroll"].includes(getComputedStyle(wrap).overflowX)) problems.push(`${name} cannot scroll`);
      const first = table.querySelector("tbody td, tbody th");
      if (first && getComputedStyle(first).position !== "sticky") problems.push(`${name}: first column not sticky`);
    }
  });
  return problems;
}
