"""The dashboards as a merchant meets them, in Debian's Chromium driven by Playwright.

Run by tests/tests/dashboards.rs with the demo's address and keys in the environment. Prints
one JSON object of what it read and measured; the Rust test compares the numbers with SQL.
Every page is photographed into SCREENSHOTS.
"""

import json
import os
import sys
import time
import urllib.request
import uuid

from playwright.sync_api import sync_playwright

BASE = os.environ["BASE"]
KEY_A = os.environ["KEY_A"]
ADMIN = os.environ["ADMIN_KEY"]
MERCHANT_A = os.environ["MERCHANT_A"]
MERCHANT_B = os.environ["MERCHANT_B"]
PASSWORD_B = os.environ["PASSWORD_B"]
B_MARKERS = json.loads(os.environ["B_MARKERS"])  # strings only B's pages would show
STOREFRONT = os.environ["STOREFRONT_KEY"]
NEW_ORDER = os.environ["NEW_ORDER"]  # the JSON body of one more order for A
PERIOD = os.environ["PERIOD"]
SHOTS = os.environ["SCREENSHOTS"]
os.makedirs(SHOTS, exist_ok=True)

readings = {}


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def card(page, name):
    return page.locator(f'[data-card="{name}"] .value').inner_text().strip()


def no_b_data(body, where):
    for marker in B_MARKERS:
        check(marker not in body, f"{where} shows {marker!r}, which belongs to merchant B")


def drawn(page, chart_id, series):
    page.wait_for_selector(f'#{chart_id}[data-drawn="1"]', timeout=10_000)
    count = page.get_attribute(f"#{chart_id}", "data-series")
    check(count == str(series), f"{chart_id} drew {count} series, not {series}")
    painted = page.evaluate(
        """(id) => {
            const el = document.getElementById(id);
            const canvas = el.querySelector('canvas');
            if (canvas) {
                const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
                return false;
            }
            const svg = el.querySelector('svg');
            return !!svg && svg.querySelectorAll('path, rect').length > 0;
        }""",
        chart_id,
    )
    check(painted, f"{chart_id} is blank")


def sign_in_with_key(page, key):
    page.goto(f"{BASE}/signin")
    page.locator('form:has(input[name="key"]) input[name="key"]').fill(key)
    page.locator('form:has(input[name="key"]) button').click()


def post_order():
    request = urllib.request.Request(
        f"{BASE}/v1/orders",
        data=NEW_ORDER.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {STOREFRONT}", "Content-Type": "application/json",
                 "Idempotency-Key": str(uuid.uuid4())},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        check(response.status == 201, f"the new order got {response.status}")


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"],
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(BASE) and not r.url.startswith("data:") else None)
    # Script errors and content-security-policy refusals (a chart library styling itself
    # inline, say) are failures on every page of every visitor: the pages must work under
    # their own policy. Only the refusals this script provokes on purpose are expected: a
    # page answered 401 or 403 logs "Failed to load resource ... status of 40x".
    console_errors = []

    def watch(watched):
        def on_console(message):
            expected = message.text.startswith("Failed to load resource") and (
                "status of 401" in message.text or "status of 403" in message.text)
            if message.type == "error" and not expected:
                console_errors.append(f"{message.text} ({message.location.get('url')})")
        watched.on("console", on_console)
        watched.on("pageerror", lambda e: console_errors.append(str(e)))
        return watched

    watch(page)

    # Signed out: the front page sends the browser to sign in.
    page.goto(f"{BASE}/")
    check(page.url.startswith(f"{BASE}/signin"), f"signed out, / went to {page.url}")
    shot(page, "01-sign-in")

    # A wrong key is refused with a message, not a stack trace.
    sign_in_with_key(page, "sk_not_a_key")
    check("not right" in page.inner_text("main"), "a wrong key says so")
    readings["wrong_key_status"] = page.evaluate("() => performance.getEntriesByType('navigation')[0].responseStatus")
    check(readings["wrong_key_status"] == 401, f"a wrong key answered {readings['wrong_key_status']}")

    # Keyboard: the first Tab lands on the skip link.
    sign_in_with_key(page, KEY_A)
    page.wait_for_url(f"{BASE}/dashboard/today")
    page.keyboard.press("Tab")
    check(page.evaluate("() => document.activeElement.className") == "skip", "the first Tab reaches the skip link")

    drawn(page, "sales-by-hour", 2)
    readings["today_gmv"] = card(page, "gmv")
    readings["today_orders"] = card(page, "orders")
    readings["today_aov"] = card(page, "aov")
    shot(page, "02-today")

    # A new order through the API shows up on the open page by itself.
    before = readings["today_orders"]
    started = time.monotonic()
    post_order()
    page.wait_for_function(
        "(before) => { const el = document.querySelector('[data-card=\"orders\"] .value'); return el && el.innerText.trim() !== before; }",
        arg=before,
        timeout=5_000,
    )
    readings["fresh_ms"] = round((time.monotonic() - started) * 1000)
    readings["orders_after"] = card(page, "orders")
    readings["gmv_after"] = card(page, "gmv")

    for name, chart, series in [("sales", "sales-chart", 2), ("funnel", "funnel-chart", 1),
                                ("products", "products-chart", 1), ("search", "search-chart", 2),
                                ("delivery", "delivery-chart", 1)]:
        response = page.goto(f"{BASE}/dashboard/{name}")
        check(response.status == 200, f"{name} answered {response.status}")
        drawn(page, chart, series)
        check(page.locator(f"#{chart} + script + details table").count() == 1, f"{name} has the chart's table")
        shot(page, f"03-{name}")
    # The sold-out product is in the running-low table, and A's products trend in its shop once
    # the trending window holding its orders has closed; the stages may take a moment.
    def table(caption):
        return page.locator("table", has=page.locator("caption", has_text=caption))
    low_rows = table("Running low").locator("tbody tr")
    trend_rows = table("Trending now in your shop").locator("tbody tr")
    for _ in range(60):
        page.goto(f"{BASE}/dashboard/products")
        if low_rows.count() > 0 and trend_rows.count() > 0:
            break
        time.sleep(0.5)
    check(low_rows.count() == 1, f"{low_rows.count()} products running low, not 1")
    check(trend_rows.count() > 0, "nothing trends in A's shop")
    readings["running_low"] = low_rows.first.inner_text()
    readings["trending"] = table("Trending now in your shop").inner_text()
    page.goto(f"{BASE}/dashboard/sales")
    readings["sales_gmv"] = card(page, "gmv")
    page.goto(f"{BASE}/dashboard/delivery")
    readings["delivered"] = card(page, "delivered")
    readings["on_time"] = card(page, "on_time")
    check("cr-dash" in page.inner_text("main"), "the courier is listed")

    response = page.goto(f"{BASE}/dashboard/exports")
    check(response.status == 200, "exports page")
    link = page.locator(f'a[href*="period={PERIOD}&format=xlsx"]')
    check(link.count() == 1, "this month's workbook is offered")
    download = page.request.get(BASE + link.get_attribute("href"))
    check(download.status == 200, f"the workbook download answered {download.status}: {download.text()[:200]}")
    check(download.body()[:2] == b"PK", "the workbook is a zip (XLSX)")
    readings["xlsx_bytes"] = len(download.body())
    shot(page, "04-exports")

    # Hindi, with Indian number formats.
    page.goto(f"{BASE}/dashboard/today")
    page.select_option('select[name="lang"]', "hi")
    page.locator('form[action="/dashboard/language"] button').click()
    page.wait_for_url(f"{BASE}/dashboard/today")
    check("आज" in page.inner_text("h1"), "the page is in Hindi")
    check(card(page, "gmv") == readings["gmv_after"], f"Hindi shows {card(page, 'gmv')}, English {readings['gmv_after']}")
    shot(page, "05-today-hindi")

    # A phone.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    phone_page = watch(phone.new_page())
    phone_page.context.add_cookies(context.cookies())
    phone_page.goto(f"{BASE}/dashboard/today")
    wide = phone_page.evaluate("() => document.documentElement.scrollWidth")
    check(wide <= 390, f"the Today page is {wide} px wide on a 390 px phone")
    shot(phone_page, "06-today-phone")
    phone.close()

    # Isolation: B's shop through a page, a data call and an export, as A.
    isolation = {}
    for path in [f"/dashboard/today?merchant={MERCHANT_B}", f"/dashboard/sales?merchant={MERCHANT_B}",
                 f"/dashboard/delivery?merchant={MERCHANT_B}", f"/v1/merchants/{MERCHANT_B}/analytics/delivery",
                 f"/dashboard/today/panel?merchant={MERCHANT_B}", f"/dashboard/exports?merchant={MERCHANT_B}",
                 f"/v1/merchants/{MERCHANT_B}/analytics/sales", f"/v1/merchants/{MERCHANT_B}/exports?period={PERIOD}",
                 "/dashboard/ops"]:
        answer = page.request.get(BASE + path)
        isolation[path] = answer.status
        check(answer.status in (403, 404), f"{path} answered {answer.status} to merchant A")
        no_b_data(answer.text(), path)
    readings["isolation"] = isolation
    page.goto(f"{BASE}/dashboard/today?merchant={MERCHANT_B}")
    shot(page, "07-other-shop-refused")

    # A state-changing form without its token is refused.
    answer = page.request.post(f"{BASE}/signout", form={"csrf": "wrong"})
    readings["csrf_status"] = answer.status
    check(answer.status == 403, f"sign-out without the token answered {answer.status}")

    # Sign out: the cookie no longer opens anything.
    page.goto(f"{BASE}/dashboard/today")
    page.locator('form[action="/signout"] button').click()
    page.wait_for_url(f"{BASE}/signin?why=signed_out")
    page.goto(f"{BASE}/dashboard/today")
    check(page.url.startswith(f"{BASE}/signin"), "after signing out the pages ask to sign in")

    # A forged cookie.
    forged = browser.new_context()
    forged.add_cookies([{"name": "shopstream_session", "value": "0" * 32 + "." + "0" * 64, "url": BASE}])
    forged_page = watch(forged.new_page())
    answer = forged_page.goto(f"{BASE}/dashboard/today")
    readings["forged_status"] = answer.status
    check(answer.status == 401 and "not issued by this server" in forged_page.inner_text("main"), "a forged cookie is named")
    shot(forged_page, "08-forged-cookie")
    forged.close()

    # B signs in with the password an admin set; a wrong one is refused.
    b = browser.new_context()
    b_page = watch(b.new_page())
    b_page.goto(f"{BASE}/signin")
    form = b_page.locator('form:has(input[name="password"])')
    form.locator('input[name="merchant_id"]').fill(MERCHANT_B)
    form.locator('input[name="password"]').fill(PASSWORD_B + "x")
    form.locator("button").click()
    check("not right" in b_page.inner_text("main"), "a wrong password is refused")
    form = b_page.locator('form:has(input[name="password"])')
    form.locator('input[name="merchant_id"]').fill(MERCHANT_B)
    form.locator('input[name="password"]').fill(PASSWORD_B)
    form.locator("button").click()
    b_page.wait_for_url(f"{BASE}/dashboard/today")
    readings["b_orders"] = card(b_page, "orders")
    b.close()

    # The admin's operations view.
    admin = browser.new_context()
    admin_page = watch(admin.new_page())
    sign_in_with_key(admin_page, ADMIN)
    admin_page.wait_for_url(f"{BASE}/dashboard/ops")
    body = admin_page.inner_text("main")
    check("Consumer lag" in body and "Events per second" in body, "the operations view lists lag and rates")
    # The test's own psql sessions logged in to the SQL endpoint before the browser started.
    sql_table = admin_page.locator("table", has=admin_page.locator("caption", has_text="SQL endpoint")).inner_text()
    check("shopstream_sql_logins_total" in sql_table and "shopstream_sql_memory_limit_bytes" in sql_table,
          f"the operations view shows the SQL endpoint: {sql_table[:300]}")
    shot(admin_page, "09-operations")
    admin.close()

    readings["outside_requests"] = outside
    check(not outside, f"pages asked for {outside}")
    check(not console_errors, f"the pages logged errors: {console_errors}")
    browser.close()

print(json.dumps(readings))
