// What tests/e2e/test_schemes_browser.py checks of the page's accessibility: WCAG AA contrast
// of every element's own text, a name for every control, sideways overflow, positive tabindex.
(() => {
    function rgb(value) {
        const m = value.match(/rgba?\(([^)]+)\)/);
        if (!m) return null;
        const [r, g, b, a] = m[1].split(",").map(Number);
        return {r, g, b, a: a === undefined ? 1 : a};
    }
    function luminance(c) {
        const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
    }
    function background(element) {
        for (let e = element; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c && c.a > 0.9) return c;
        }
        return {r: 255, g: 255, b: 255, a: 1};
    }
    const lowContrast = [];
    for (const element of document.querySelectorAll("#main *")) {
        const own = [...element.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
        if (!own || !element.getClientRects().length) continue;
        const style = getComputedStyle(element);
        if (style.visibility === "hidden" || element.closest("[hidden], template, dialog:not([open])")) continue;
        const fg = rgb(style.color), bg = background(element);
        const [l1, l2] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
        const ratio = (l1 + 0.05) / (l2 + 0.05);
        const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.6 && Number(style.fontWeight) >= 700);
        if (ratio < (large ? 3 : 4.5)) lowContrast.push(`${element.tagName}.${element.className} ${ratio.toFixed(2)}`);
    }
    const unnamed = [];
    for (const control of document.querySelectorAll("#main input:not([type=hidden]), #main select, #main textarea, #main button")) {
        if (control.closest("template")) continue;
        const named = control.labels && control.labels.length || control.getAttribute("aria-label")
            || control.getAttribute("aria-labelledby") || (control.tagName === "BUTTON" && control.textContent.trim());
        if (!named) unnamed.push(`${control.tagName} ${control.name || control.id}`);
    }
    return {
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        lowContrast,
        unnamed,
        positiveTabindex: document.querySelectorAll("[tabindex]:not([tabindex='0']):not([tabindex='-1'])").length,
    };
})
