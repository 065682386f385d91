"""The customer's whole experience in a real browser, against the real stack (PRD sections 5, 11)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WAIT = 20_000  # ms: the longest any state below may take to appear


def open_flight(page: Page, url: str, number: str = "FL101") -> None:
    page.goto(url)
    page.get_by_role("link", name=f"Choose seats on {number}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(number)


def hold(page: Page, seat: str) -> None:
    page.get_by_role("button", name=f"Seat {seat}, available").click()
    expect(page).to_have_url(re.compile(r"/orders/ord-[0-9a-f]+/$"))
    expect(page.get_by_role("button", name=f"Seat {seat}, selected")).to_have_attribute(
        "aria-pressed", "true"
    )


def clock(page: Page):
    return page.locator("[data-clock]")


def another_customer_holds(new_context, url: str, seat: str, *, while_stale: Page, polls: str) -> None:
    """Another browser takes ``seat`` while ``while_stale`` keeps showing it as free (its polls
    to URLs matching ``polls`` are cut off)."""
    while_stale.route(re.compile(polls), lambda route: route.abort())
    rival = new_context().new_page()
    open_flight(rival, url)
    hold(rival, seat)


def test_whole_flow_with_00000_ends_confirmed(page: Page, stack, settings, screenshot):
    settings.SEAT_RESERVATION_TIMEOUT = timedelta(minutes=15)
    open_flight(page, stack.url)
    expect(page.get_by_text("120 of 120 available")).to_be_visible()
    screenshot(page, "seat-map")

    hold(page, "12A")
    expect(clock(page)).to_have_text(re.compile(r"^(15:00|14:5\d)$"))
    page.get_by_role("button", name="Seat 12B, available").click()
    expect(page.get_by_role("button", name="Seat 12B, selected")).to_be_visible()
    screenshot(page, "order")

    page.get_by_label("5-digit payment code").fill("00000")
    page.get_by_role("button", name="Pay and confirm").click()

    banner = page.get_by_role("status").filter(has_text="Booking confirmed!")
    expect(banner).to_contain_text(
        re.compile(r"Booking confirmed! Order #ORD-[0-9A-F]+\. Seats 12A, 12B on Flight FL101"), timeout=WAIT
    )
    expect(page.get_by_role("button", name="Seat 12A, booked")).to_be_disabled()
    screenshot(page, "confirmed")


def test_a_seat_change_resets_the_countdown(page: Page, stack, settings, screenshot):
    settings.SEAT_RESERVATION_TIMEOUT = timedelta(minutes=15)
    open_flight(page, stack.url)
    hold(page, "5A")
    expect(clock(page)).to_have_text(re.compile(r"^14:5[0-7]$"), timeout=WAIT)  # time passes

    page.get_by_role("button", name="Seat 5B, available").click()

    expect(page.get_by_role("button", name="Seat 5B, selected")).to_be_visible()
    expect(clock(page)).to_have_text(re.compile(r"^(15:00|14:59)$"))


def test_99999_shows_every_attempt_then_the_failure(page: Page, stack, settings, screenshot):
    settings.SEAT_RESERVATION_TIMEOUT = timedelta(minutes=15)
    open_flight(page, stack.url)
    hold(page, "20F")
    page.get_by_label("5-digit payment code").fill("99999")
    page.get_by_role("button", name="Pay and confirm").click()

    status = page.locator("#banner")
    expect(status).to_contain_text("Validating payment...")
    expect(status).to_contain_text("Payment validation failed. Retrying (attempt 2 of 3)...", timeout=WAIT)
    screenshot(page, "retrying")
    expect(status).to_contain_text("Payment validation failed. Retrying (attempt 3 of 3)...", timeout=WAIT)
    expect(status).to_contain_text(
        "Payment validation failed after 3 attempts. Your seats have been released. Please try again.",
        timeout=WAIT,
    )
    expect(page.get_by_role("link", name="Choose seats again")).to_be_visible()
    expect(page.get_by_role("button", name="Seat 20F, available")).to_be_visible()
    screenshot(page, "failed")


def test_an_unpaid_hold_expires_at_0000_and_frees_the_seats(page: Page, stack, settings, screenshot):
    settings.SEAT_RESERVATION_TIMEOUT = timedelta(seconds=5)
    open_flight(page, stack.url)
    hold(page, "9C")
    expect(clock(page)).to_have_text(re.compile(r"^00:0[0-5]$"))
    expect(page.locator("[data-clock-note]")).to_have_text(
        "Less than a minute left! Pay now to keep your seats."
    )
    expect(page.locator("#countdown")).to_have_class(re.compile(r"countdown--warning"))

    expect(page.locator("#banner")).to_contain_text(
        "Your seat hold expired and the seats were released.", timeout=WAIT
    )
    expect(page.get_by_role("button", name="Seat 9C, available")).to_be_visible()
    screenshot(page, "expired")  # as the customer sees it (the page a Back button restores may be older)
    page.get_by_role("link", name="Choose seats again").click()
    expect(page).to_have_url(f"{stack.url}/flights/fl-101/")


def test_a_seat_taken_in_another_browser_shows_as_taken(page: Page, new_context, stack, screenshot):
    open_flight(page, stack.url)
    another_customer_holds(new_context, stack.url, "16D", while_stale=page, polls=r".*/flights/fl-101/\?v=.*")

    page.get_by_role("button", name="Seat 16D, available").click()

    expect(page.get_by_role("alert")).to_have_text("Seat 16D is no longer available")
    expect(page.get_by_role("button", name="Seat 16D, held by another customer")).to_be_disabled()
    expect(page).to_have_url(f"{stack.url}/flights/fl-101/")
    screenshot(page, "seat-taken")


def test_the_flight_list_counts_free_seats(page: Page, stack, screenshot):
    page.goto(stack.url)

    row = page.get_by_role("row").filter(has_text="FL505")
    expect(row).to_contain_text("352/352 seats available")
    expect(row).to_contain_text("from $699.00")
    # FL505 leaves at 19:00 UTC: 2:00 PM in the viewer's New York winter time.
    expect(row.locator("time")).to_contain_text(re.compile(r"02:00\s?PM EST"))
    screenshot(page, "flights")


PHONE_WIDTH = 390


def page_overflows_sideways(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")


def fits_across(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE_WIDTH


def test_on_a_phone_the_wide_body_booking_fits_the_screen(new_context, stack, screenshot):
    phone = new_context(viewport={"width": PHONE_WIDTH, "height": 844}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.goto(stack.url)
    choose = page.get_by_role("link", name="Choose seats on FL505")
    assert fits_across(choose), "every flight's button shows without scrolling sideways"
    assert not page_overflows_sideways(page)

    choose.click()
    assert not page_overflows_sideways(page)
    hold(page, "20D")

    assert not page_overflows_sideways(page), "the 10-abreast cabin must scroll inside its card"
    assert fits_across(page.get_by_role("button", name="Pay and confirm"))
    expect(page.get_by_label("5-digit payment code")).to_have_attribute("inputmode", "numeric")
    expect(clock(page)).to_be_in_viewport()
    screenshot(page, "phone-order")


def test_seats_can_be_chosen_with_the_keyboard(page: Page, stack):
    open_flight(page, stack.url)
    page.get_by_role("button", name="Seat 3C, available").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Seat 3C, selected")).to_be_visible()

    page.get_by_role("button", name="Seat 3D, available").focus()
    page.keyboard.press("Space")

    expect(page.get_by_role("button", name="Seat 3D, selected")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#seat-panel .count")).to_have_text("3C, 3D")


def test_adding_a_seat_someone_else_took_keeps_the_selection(page: Page, new_context, stack):
    open_flight(page, stack.url)
    hold(page, "11A")
    another_customer_holds(new_context, stack.url, "11B", while_stale=page, polls=r".*/orders/.*\?poll=1.*")

    page.get_by_role("button", name="Seat 11B, available").click()

    expect(page.get_by_role("alert")).to_have_text("Seat 11B is no longer available")
    expect(page.get_by_role("button", name="Seat 11B, held by another customer")).to_be_disabled()
    expect(page.get_by_role("button", name="Seat 11A, selected")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#seat-panel .count")).to_have_text("11A")


def test_a_business_seat_is_booked_at_its_price_and_the_confirmation_says_it(
    page: Page, new_context, stack, screenshot
):
    open_flight(page, stack.url, "FL505")
    business = page.locator(".cabin-name").filter(has_text="Business")
    expect(business).to_have_text("Business · rows 3\N{EN DASH}9 · 2-2-2 · $3,200.00")
    expect(page.get_by_role("list", name="Cabins and prices")).to_contain_text("First $6,500.00")
    screenshot(page, "cabins")

    hold(page, "3A")
    seat = page.get_by_role("button", name="Seat 3A, selected, Business, $3,200.00")
    expect(seat).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#order-total")).to_have_text("$3,200.00")
    page.get_by_label("5-digit payment code").fill("00000")
    page.get_by_role("button", name="Pay and confirm").click()

    expect(page.locator("#banner")).to_contain_text("Booking confirmed!", timeout=WAIT)
    summary = page.locator("#booking-summary")
    expect(summary.locator(".seat-price")).to_have_text("Business · $3,200.00")
    expect(summary.locator("#booking-total")).to_have_text("$3,200.00")
    expect(page.locator("#charges")).to_contain_text("$3,200.00 charged at")
    expect(page.get_by_role("button", name="Seat 3A, booked for you, Business, $3,200.00")).to_be_disabled()
    screenshot(page, "confirmed-business")

    # A seat's change of state eases in, unless the customer asked for less motion.
    assert seat_transition(page) == "0.25s"
    calm = new_context(reduced_motion="reduce").new_page()
    open_flight(calm, stack.url, "FL505")
    assert seat_transition(calm) == "0s"


def seat_transition(page: Page) -> str:
    return page.evaluate(
        "getComputedStyle(document.querySelector('button.seat')).transitionDuration.split(',')[0].trim()"
    )


def assert_accessible(page: Page) -> None:
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def test_every_page_passes_axe_accessibility_checks(page: Page, stack):
    page.goto(stack.url)
    assert_accessible(page)

    open_flight(page, stack.url, "FL505")
    assert_accessible(page)

    hold(page, "20D")
    expect(clock(page)).to_have_text(re.compile(r"^\d\d:\d\d$"))
    assert_accessible(page)

    page.get_by_label("5-digit payment code").fill("00000")
    page.get_by_role("button", name="Pay and confirm").click()
    expect(page.locator("#banner")).to_contain_text("Booking confirmed!", timeout=WAIT)
    assert_accessible(page)
