# Four stores, daily unit sales for 400 days: a trend, a weekly pattern, noise, and a few missing rows.
# Prices follow a plan (a cut for 10 days every 90), known ahead: data.future_columns.
# Also writes plan.csv: stores.csv plus the next 7 days of each store with units empty and the
# planned price filled (what `rnnpipe predict` reads the known future values from).
import csv, datetime, math, random

rng = random.Random(0)
with open("stores.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["store", "date", "units", "price"])
    for store, level, slope in (("berlin", 200, 0.4), ("paris", 120, 0.2), ("rome", 80, -0.05), ("oslo", 40, 0.1)):
        for d in range(400):
            if rng.random() < 0.01:
                continue  # a missing day: a gap (interpolated below)
            day = datetime.date(2023, 1, 1) + datetime.timedelta(days=d)
            price = 9.99 if d % 90 < 80 else 7.99
            units = (level + slope * d) * (1 + 0.3 * math.sin(2 * math.pi * d / 7)) * (1.2 if price < 9 else 1)
            w.writerow([store, day.isoformat(), round(units + rng.gauss(0, 0.05 * level), 1), price])

with open("stores.csv") as f:
    history = f.read()
with open("plan.csv", "w", newline="") as f:
    f.write(history)
    w = csv.writer(f)
    for store in ("berlin", "paris", "rome", "oslo"):
        for d in range(400, 407):
            day = datetime.date(2023, 1, 1) + datetime.timedelta(days=d)
            w.writerow([store, day.isoformat(), "", 9.99 if d % 90 < 80 else 7.99])
