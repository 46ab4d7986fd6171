"""The seed's reference code (../shared/seed/lr_range_test.md), copied verbatim where it runs.

These are the independent references the tests compare lrfind against; only the hard-coded
0.05 EMA weight is kept as in the seed.
"""

import numpy as np


def seed_lr_schedule(min_lr, max_lr, num_steps):
    return np.exp(np.linspace(np.log(min_lr), np.log(max_lr), num_steps))


def seed_range_test(train_fn, min_lr=1e-7, max_lr=10.0, num_steps=100):
    """The body of the seed's ``LearningRateFinder.range_test``, returning the kept points (the
    seed's suggestion needs at least 2 of them: call ``seed_find_suggested_lr`` on them)."""
    lr_schedule = seed_lr_schedule(min_lr, max_lr, num_steps)
    lrs, losses = [], []
    smoothed_loss = None
    best_loss = float("inf")
    for lr in lr_schedule:
        loss = train_fn(lr)
        if np.isnan(loss) or loss > 10 * best_loss:
            break
        lrs.append(lr)
        losses.append(loss)
        best_loss = min(best_loss, loss)
        if smoothed_loss is None:
            smoothed_loss = loss
        else:
            smoothed_loss = 0.05 * loss + 0.95 * smoothed_loss
    return lrs, losses


def seed_find_suggested_lr(lrs, losses):
    log_lrs = np.log(lrs)
    gradients = np.gradient(losses, log_lrs)
    min_grad_idx = np.argmin(gradients)
    suggest_idx = max(0, min_grad_idx - len(losses) // 10)
    return lrs[suggest_idx]


def warmup_cosine_schedule(step, warmup_steps, total_steps, base_lr):
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    else:
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        return base_lr * 0.5 * (1 + np.cos(np.pi * progress))


def one_cycle_schedule(step, total_steps, base_lr, max_lr):
    pct = step / total_steps
    if pct < 0.3:
        return base_lr + (max_lr - base_lr) * (pct / 0.3)
    else:
        return max_lr * (1 - (pct - 0.3) / 0.7) ** 2


def seed_good_curve(lrs):
    """A curve shaped like the seed's "Good Result" table: plateau at 2.30, descent to about
    1.5 around 1e-2, then a blow-up."""
    x = np.log10(lrs)
    return 2.3 - 0.8 / (1 + np.exp(-(x + 3) * 2.5)) + np.where(x > -2, 5 * (x + 2) ** 2, 0.0)
