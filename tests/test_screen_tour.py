"""The screen tour: log in and visit every screen of the navigation, with data on it, in a real
browser at desktop and phone width, the way a person would look at it.

A screen fails when a visible form control lacks the shared component styling (read from its
computed style), the page scrolls sideways, a checkbox or radio sits on another line than its
label, the console shows an error, or a request of the page answers 4xx/5xx. Each screen (and
each of its dialogs, opened) is saved as a PNG under HUB_TOUR_DIR (default `var/tour/`, ignored
by git) for a person to look at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.urls import reverse

from events.models import Metric
from hub.models import Plan
from integrations.models import Integration
from integrations.sources.models import Mapping
from tests.browser import chromium_page
from tests.screen_data import screen_data_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOUR_DIR = Path(os.environ.get("HUB_TOUR_DIR") or Path(__file__).resolve().parent.parent / "var" / "tour")
WIDTHS = (1280, 390)

# What the shared components look like, read back from computed styles (static/hub/app.css).
# A browser's own controls have a 13.33px font, a 2px radius and a system accent colour.
PROBLEMS_JS = r"""
() => {
  const accent = getComputedStyle(document.documentElement).getPropertyValue('--accent-rgb').trim();
  const problems = [];
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    // More than a pixel: widgets that replace a control (select2) keep it as a 1px box for forms.
    return r.width > 1 && r.height > 1 && s.visibility !== 'hidden' && s.display !== 'none';
  };
  const name = (el) => {
    const label = (el.labels && el.labels[0] && el.labels[0].innerText.trim()) || el.name || el.id
      || el.innerText || el.getAttribute('aria-label') || '';
    return `${el.tagName.toLowerCase()}[type=${el.type || ''}] "${String(label).slice(0, 40)}"`;
  };
  const scope = document.querySelector('dialog[open]') || document;
  for (const el of scope.querySelectorAll('input, select, textarea, button')) {
    if (el.type === 'hidden' || !visible(el)) continue;
    const s = getComputedStyle(el);
    if (el.type === 'checkbox' || el.type === 'radio') {
      if (!s.accentColor.replace(/\s/g, '').includes(accent.replace(/\s/g, ''))) {
        problems.push(`unstyled ${name(el)}: accent-color ${s.accentColor}`);
      }
      const label = el.labels && el.labels[0];
      // The admin's row selectors (and their select-all box) are the row's control, without text.
      if (!label && el.closest('td.action-checkbox, th.action-checkbox-column')) continue;
      if (!label) { problems.push(`no label for ${name(el)}`); continue; }
      // The label's first line of text must share the line of the box.
      const range = document.createRange();
      const text = [...label.childNodes].find((n) => n.nodeType === 3 && n.textContent.trim())
        || [...label.querySelectorAll('*')].find((n) => n !== el && n.innerText && n.innerText.trim());
      if (!text) continue;
      range.selectNodeContents(text);
      const line = range.getClientRects()[0] || range.getBoundingClientRect();
      const box = el.getBoundingClientRect();
      const middle = box.top + box.height / 2;
      if (!(line.top <= middle && middle <= line.bottom)) {
        problems.push(`label off the line of ${name(el)}`);
      }
      continue;
    }
    if (el.tagName === 'BUTTON' || ['submit', 'button', 'reset'].includes(el.type)) {
      if (s.fontSize === '13.3333px' || s.cursor !== 'pointer') {
        problems.push(`unstyled button ${name(el)}: font ${s.fontSize}, cursor ${s.cursor}`);
      }
      continue;
    }
    if (el.type === 'color' || el.type === 'file' || el.type === 'range') continue;
    if (s.fontSize === '13.3333px' || parseFloat(s.borderTopLeftRadius) < 6 || parseFloat(s.paddingLeft) < 6) {
      problems.push(`unstyled ${name(el)}: font ${s.fontSize}, radius ${s.borderTopLeftRadius}, padding ${s.paddingLeft}`);
    }
  }
  const root = document.scrollingElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    const wide = [...document.querySelectorAll('body *')].filter((el) => {
      const r = el.getBoundingClientRect();
      return r.right > root.clientWidth + 1 && visible(el);
    }).slice(0, 3).map((el) => `${el.tagName.toLowerCase()}.${el.className}`);
    problems.push(`scrolls sideways: ${root.scrollWidth} > ${root.clientWidth} (${wide.join(', ')})`);
  }
  return problems;
}
"""


def _screens(data) -> list[tuple[str, str]]:
    app, ws = data.app.public_id, data.workspace.slug
    metric = Metric.objects.get(app=data.app, name="Jobs run")
    mapping = Mapping.objects.filter(source=data.source).first()
    customer = data.customer.public_id
    plan = Plan.objects.get(app=data.app, name="Basic")
    source = data.source.public_id
    destination = Integration.objects.get(workspace=data.workspace, name="Metronome billing")
    subscription = destination.subscriptions.first()
    return [
        ("workspace", reverse("workspace_home", args=[ws])),
        ("workspace-new", reverse("workspace_create")),
        ("app-new", reverse("app_create", args=[ws])),
        ("members", reverse("workspace_members", args=[ws])),
        ("account", reverse("account")),
        ("integrations", reverse("integration_list", args=[ws])),
        ("integration-new", reverse("segment_create", args=[ws])),
        ("integration-edit", reverse("integration_edit", args=[ws, data.integration.pk])),
        ("delivery-log", reverse("delivery_log", args=[ws, data.integration.pk])),
        ("destination-new", reverse("destination_create_webhook", args=[ws])),
        ("destination-edit", reverse("destination_edit", args=[ws, destination.pk])),
        ("subscription-edit", reverse("subscription_edit", args=[ws, destination.pk, subscription.pk])),
        ("usage-events", reverse("usage_events", args=[app])),
        ("metrics", reverse("metrics", args=[app])),
        ("metric-new", reverse("metric_create", args=[app])),
        ("metric", reverse("metric_detail", args=[app, metric.public_id])),
        ("metric-edit", reverse("metric_edit", args=[app, metric.public_id])),
        ("customers", reverse("customers", args=[app])),
        ("plans", reverse("plans", args=[app])),
        ("plan-new", reverse("plan_create", args=[app])),
        ("plan-edit", reverse("plan_edit", args=[app, plan.public_id])),
        ("customer", reverse("customer_detail", args=[app, customer])),
        ("sources", reverse("sources", args=[app])),
        ("source", reverse("source_detail", args=[app, source])),
        ("debugger", reverse("source_debugger", args=[app, source])),
        ("mapping-new", reverse("mapping_new", args=[app, source])),
        ("mapping-edit", reverse("mapping_edit", args=[app, source, mapping.pk])),
        ("settings", reverse("app_settings", args=[app])),
        ("admin", reverse("admin:index")),
        ("admin-customers", reverse("admin:hub_customer_changelist")),
        ("admin-customer", reverse("admin:hub_customer_change", args=[data.customer.pk])),
        ("admin-plan-new", reverse("admin:hub_plan_add")),
        ("admin-integration", reverse("admin:integrations_integration_change", args=[data.integration.pk])),
        ("admin-usage-limits", reverse("admin:events_planusagelimit_changelist")),
        ("admin-inbox-batches", reverse("admin:sources_inboxbatch_changelist")),
    ]


def _look(page, shot: str) -> list[str]:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(TOUR_DIR / f"{shot}.png"), full_page=True)
    return page.evaluate(PROBLEMS_JS)


def test_every_screen_looks_right_at_desktop_and_phone_width(live_server):
    data = screen_data_create()
    TOUR_DIR.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    with chromium_page(live_server.url) as page:
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("response", lambda r: r.status >= 400 and errors.append(f"HTTP {r.status} {r.url}"))
        page.goto("/login/")
        page.get_by_label("Username or email").fill(data.email)
        page.get_by_label("Password").fill(data.password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/w/"))
        # Chromium's own icon request is not reported to Playwright: fetch the page's icon instead.
        icon = page.locator("link[rel=icon]").get_attribute("href")
        assert page.request.get(icon).ok and page.request.get("/favicon.ico").ok
        screens = _screens(data)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for name, url in screens:
                errors.clear()
                page.goto(url)
                found = _look(page, f"{name}-{width}")
                openers = page.locator("[data-open-dialog]:visible")
                for i in range(openers.count()):
                    opener = openers.nth(i)
                    dialog = opener.get_attribute("data-open-dialog")
                    opener.click()
                    found += [f"{dialog}: {p}" for p in _look(page, f"{name}-{width}-dialog{i + 1}")]
                    page.keyboard.press("Escape")
                failures += [f"{name} at {width}px: {p}" for p in found + errors]
        # The page of an invitation link (not in the navigation: it comes by email or chat).
        from django.contrib.auth import get_user_model

        from hub.services.members import invitation_create

        owner = get_user_model().objects.get(email=data.email)
        _, token = invitation_create(
            workspace=data.workspace, email="new@example.com", role="member", by=owner
        )
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            errors.clear()
            page.goto(reverse("invitation_accept", args=[token]))
            failures += [f"invitation at {width}px: {p}" for p in _look(page, f"invitation-{width}") + errors]
        # The debugger opens a received message to show it, like the delivery log does.
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(reverse("source_debugger", args=[data.app.public_id, data.source.public_id]))
        page.locator(
            "[data-testid=debugger] tbody tr[data-message-id] button[data-toggle-next]"
        ).first.click()
        assert '"type":' in page.locator("tr.message-detail:not([hidden]) pre").first.inner_text()
        page.screenshot(path=str(TOUR_DIR / "debugger-message-open.png"), full_page=True)
    assert not failures, "\n".join(failures)
