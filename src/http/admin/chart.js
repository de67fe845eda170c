// A small SVG step chart of a balance over time (drawn by hand: one chart does not need a
// library). Points are [Date, number], oldest first.

const SVG = 'http://www.w3.org/2000/svg';

function el(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

export function balanceChart(points, { label }) {
  const width = 600;
  const height = 180;
  const pad = { left: 48, right: 12, top: 12, bottom: 24 };
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', class: 'chart' });
  const title = el('title', {});
  title.textContent = label;
  svg.append(title);
  if (points.length < 2) {
    const text = el('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'chart-empty' });
    text.textContent = 'Not enough history to draw yet';
    svg.append(text);
    return svg;
  }
  const times = points.map(([at]) => at.getTime());
  const values = points.map(([, value]) => value);
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const v1 = Math.max(1, ...values);
  const x = (t) => pad.left + ((t - t0) / Math.max(1, t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / v1) * (height - pad.top - pad.bottom);
  let path = `M ${x(times[0])} ${y(values[0])}`;
  for (let i = 1; i < points.length; i += 1) {
    path += ` H ${x(times[i])} V ${y(values[i])}`;
  }
  svg.append(el('line', { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0), class: 'chart-axis' }));
  svg.append(el('path', { d: path, class: 'chart-line' }));
  for (const value of [0, v1]) {
    const text = el('text', { x: pad.left - 6, y: y(value) + 4, 'text-anchor': 'end', class: 'chart-label' });
    text.textContent = value.toLocaleString();
    svg.append(text);
  }
  const format = (t) => new Date(t).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' });
  const first = el('text', { x: pad.left, y: height - 6, class: 'chart-label' });
  first.textContent = format(t0);
  const last = el('text', { x: width - pad.right, y: height - 6, 'text-anchor': 'end', class: 'chart-label' });
  last.textContent = format(t1);
  svg.append(first, last);
  return svg;
}
