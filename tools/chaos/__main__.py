"""`python -m tools.chaos` (`make chaos`): the fault suite's command line (tools/chaos/__init__.py)."""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
import time

import tools.chaos
from devstack.supervisor import log
from tools.chaos.checks import (
    Findings,
    HoldSampler,
    check_after_faults,
    check_final,
    check_five_hundreds,
    check_money,
    check_phantoms,
    check_sales,
    recovers,
)
from tools.chaos.customers import Journal, Shopper, settle
from tools.chaos.faults import inject, plan
from tools.chaos.report import diagnose, report
from tools.chaos.stack import HOLD_SECONDS, PAYMENT_WINDOW_SECONDS, ChaosStack


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos", description=(tools.chaos.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--short", action="store_true", help="about a minute of load (part of make test)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of load (default 130, short 48)")
    parser.add_argument("--customers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    seconds = args.seconds or (48.0 if args.short else 130.0)
    faults = [fault for fault in plan(args.short) if fault.at < seconds - 3]
    log(f"chaos: seed {seed} (rerun with --seed {seed}), {args.customers} customers, {seconds:.0f} s")
    stack = ChaosStack("chaos")
    findings, journal, stop = Findings(), Journal(), threading.Event()
    try:
        stack.start()
        sampler = HoldSampler(stack, stop)
        sampler.start()
        started = time.monotonic()
        shoppers = [Shopper(n, stack.url, journal, seed, started + seconds) for n in range(args.customers)]
        for shopper in shoppers:
            shopper.start()
        checker = threading.Thread(
            target=check_after_faults, args=(stack, faults, journal, findings, stop), daemon=True
        )
        checker.start()
        inject(stack, faults, started, findings.fail)
        for shopper in shoppers:
            shopper.join(timeout=max(1.0, started + seconds + 60 - time.monotonic()))
        checker.join(timeout=30)
        log("chaos: load over; following every order to its end")
        settle(stack, journal, shoppers, HOLD_SECONDS + PAYMENT_WINDOW_SECONDS + 40)
        stop.set()
        sampler.join(timeout=5)
        check_sales(stack, findings, "end")
        check_phantoms(stack, journal, findings, "end", grace=0)
        check_final(stack, journal, sampler, findings)
        findings.diagnosis += diagnose(stack, findings.stuck)
        check_five_hundreds(journal, faults, findings)
        money = check_money(stack, findings)
        recovers(stack, findings)
        print(report(journal, faults, stack, findings, seconds, money), flush=True)
    finally:
        stop.set()
        stack.stop(keep_logs=bool(findings.violations))
    return stack.verdict(findings.violations, f"seed {seed}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
