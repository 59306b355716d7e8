// The page's elements: the one way the scripts find a node by id, build one, or set its text.

export const $ = (id) => document.getElementById(id);

// Writes only when the text differs, so an unchanged snapshot leaves the DOM untouched.
export function setText(id, value) {
  const node = $(id);
  if (node.textContent !== value) node.textContent = value;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}
