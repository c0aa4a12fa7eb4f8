// Round-trip time samples summarised as the console shows them.

export function percentile(sorted, fraction) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))];
}

export function summary(rtts) {
  const sorted = [...rtts].sort((a, b) => a - b);
  const ms = (value) => value.toFixed(1);
  return `min ${ms(sorted[0])} / median ${ms(percentile(sorted, 0.5))} / p95 ${ms(percentile(sorted, 0.95))} / max ${ms(sorted.at(-1))} ms`;
}
