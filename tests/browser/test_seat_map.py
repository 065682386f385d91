"""The seat map where the customer looks: messages beside the seat, the customer's seats in
view, every cabin across a phone, and one keyboard grid (issue 28). Each test runs at desktop
size and at a phone's 390x844, and saves its screenshots under test-results/screenshots/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_booking_flow import WAIT, assert_accessible, hold, open_flight

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
SIZES = {"desktop": {}, "phone": PHONE}


@pytest.fixture(params=list(SIZES))
def screen(request, new_context):
    """A fresh browser page at desktop size, then at phone size."""
    page = new_context(**SIZES[request.param]).new_page()
    page.size = request.param  # type: ignore[attr-defined]
    return page


def in_view(page: Page, selector: str) -> bool:
    """Wholly inside the viewport (not just partly, as Playwright's to_be_in_viewport allows)."""
    return page.evaluate(
        """s => { const r = document.querySelector(s).getBoundingClientRect();
                  return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; }""",
        selector,
    )


def test_a_message_about_a_seat_shows_under_its_row_and_is_announced(screen, new_context, stack, screenshot):
    page = screen
    open_flight(page, stack.url, "FL505")
    page.route(re.compile(r".*/flights/fl-505/\?v=.*"), lambda route: route.abort())  # a stale map
    rival = new_context().new_page()
    open_flight(rival, stack.url, "FL505")
    hold(rival, "30H")
    page.get_by_role("button", name="Seat 30H, available").click()

    message = page.locator("[data-seat-message]")
    expect(message).to_have_text("Seat 30H is no longer available")
    expect(page.locator("#announcer")).to_have_text("Seat 30H is no longer available")
    seat = page.locator("#seat-30H").bounding_box()
    shown = message.bounding_box()
    assert seat and shown and 0 <= shown["y"] - (seat["y"] + seat["height"]) < 12, "right under row 30"
    assert in_view(page, "[data-seat-message]"), "where the customer is looking"
    assert_accessible(page)
    screenshot(page, f"seat-message-{page.size}")


@pytest.mark.parametrize(("number", "seat"), [("FL606", "30A"), ("FL505", "14K")])
def test_the_order_page_opens_on_the_customers_seats(screen, stack, screenshot, number, seat):
    page = screen
    open_flight(page, stack.url, number)
    hold(page, seat)

    assert in_view(page, f"#seat-{seat}"), f"{seat} must show without scrolling"
    assert not page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    expect(page.locator("[data-clock]")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    assert in_view(page, "[data-clock]"), "the hold's countdown stays in view with the seats"
    screenshot(page, f"order-{number}-{page.size}", full_page=False)  # what the customer sees first
    assert_accessible(page)

    if page.size == "phone":  # type: ignore[attr-defined]
        page.get_by_role("link", name="Go to payment", exact=True).click()
    else:
        page.get_by_role("link", name="Skip the seat map: go to payment").focus()
        page.keyboard.press("Enter")
    expect(page.get_by_label("5-digit payment code")).to_be_focused()
    assert in_view(page, "#payment-code")


@pytest.mark.parametrize(("number", "rows"), [("FL101", 20), ("FL505", 40), ("FL606", 36)])
def test_every_row_of_every_cabin_fits_a_phone(new_context, stack, screenshot, number, rows):
    page = new_context(**PHONE).new_page()
    open_flight(page, stack.url, number)

    cabin = page.locator(".cabin-scroll")
    assert cabin.evaluate("c => c.scrollWidth <= c.clientWidth"), "no seat hidden off to the side"
    last_row = page.locator("[role=row]", has=page.locator(f"[id='seat-{rows}A']"))
    expect(last_row.locator("button.seat").first).to_be_visible()
    for seat in last_row.locator("button.seat").all():
        box = seat.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, seat.get_attribute("id")
        assert box["width"] >= 22, "big enough to tap"
    screenshot(page, f"phone-seat-map-{number}")


def tabs_to_payment(page: Page, limit: int = 400) -> int:
    page.locator("body").focus()
    page.evaluate("document.activeElement.blur()")
    for count in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "payment-code":
            return count
    return limit


def test_the_seat_map_is_one_tab_stop_with_arrow_keys_between_seats(page: Page, stack):
    open_flight(page, stack.url, "FL606")  # the A330: business 1-2-1, then 36 rows of AB-DEFG-JK
    hold(page, "13D")
    page.reload()

    tabs = tabs_to_payment(page)
    print(f"\nTab presses to the payment field on the A330's order page: {tabs}")
    assert tabs <= 10, f"{tabs} Tab presses to reach the payment field"
    expect(page.locator("[data-seat-grid] button[tabindex='0']")).to_have_count(1)

    page.locator("#seat-13D").focus()
    for key, seat in [
        ("ArrowRight", "13E"),
        ("ArrowDown", "14E"),
        ("ArrowLeft", "14D"),
        ("ArrowLeft", "14B"),  # across the aisle
        ("End", "14K"),
        ("Home", "14A"),
        ("ArrowUp", "13A"),
        ("Control+End", "36K"),
        ("Control+Home", "1A"),  # across the cabins, to business
        ("ArrowRight", "1E"),  # business is 1-2-1: no seat where economy has B and D
    ]:
        page.keyboard.press(key)
        expect(page.locator(f"#seat-{seat}")).to_be_focused()
        expect(page.locator(f"#seat-{seat}")).to_have_attribute("tabindex", "0")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Seat 1E, selected")).to_be_focused(timeout=WAIT)
    expect(page.locator("#seat-panel .count")).to_have_text("13D, 1E")


def contrast(page: Page, selector: str, prop: str, against: str) -> float:
    """The WCAG contrast ratio of one element's colour property against another element's
    background (plain colours)."""
    return page.evaluate(
        """([sel, prop, bg]) => {
             const rgb = s => s.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
             const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
               return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
               return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
             const a = lum(rgb(getComputedStyle(document.querySelector(sel))[prop]));
             const b = lum(rgb(getComputedStyle(document.querySelector(bg)).backgroundColor));
             return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); }""",
        [selector, prop, against],
    )


def test_a_held_seat_is_outlined_at_3_to_1(page: Page, new_context, stack):
    open_flight(page, stack.url)
    rival = new_context().new_page()
    open_flight(rival, stack.url)
    hold(rival, "2C")
    page.reload()
    expect(page.get_by_role("button", name="Seat 2C, held by another customer")).to_be_disabled()

    assert contrast(page, "#seat-2C", "borderTopColor", ".seat-panel") >= 3


def test_a_booking_can_be_found_again_in_another_browser(screen, new_context, stack, settings, screenshot):
    page = screen
    settings.SEAT_RESERVATION_TIMEOUT = timedelta(minutes=15)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_flight(page, stack.url)
    hold(page, "14F")
    page.get_by_label("5-digit payment code").fill("00000")
    page.get_by_role("button", name="Pay and confirm").click()

    expect(page.locator("#banner")).to_contain_text("Seat 14F on Flight FL101", timeout=WAIT)
    expect(page.get_by_role("button", name="Seat 14F, booked for you")).to_be_disabled()
    reference = page.locator(".reference").inner_text()
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", reference), reference
    page.get_by_role("button", name="Copy link").click()
    expect(page.locator("#announcer")).to_have_text("Link copied")
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == page.get_by_label("Your private link to this booking").input_value()
    screenshot(page, f"confirmed-{page.size}")

    elsewhere = new_context(**SIZES[page.size]).new_page()  # type: ignore[attr-defined]
    elsewhere.goto(link)
    expect(elsewhere.locator(".reference")).to_have_text(reference)
    expect(elsewhere.get_by_role("button", name="Seat 14F, booked for you")).to_be_visible()
    expect(elsewhere.locator("form")).to_have_count(0)
    screenshot(elsewhere, f"booking-link-{page.size}")
    assert_accessible(elsewhere)
    assert elsewhere.goto(link[:-3] + "xyz/").status == 404
