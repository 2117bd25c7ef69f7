-- A charge is recorded as CHARGING, and committed, before the gateway is called. If the attempt is
-- then lost (worker crash, lost response, a failed write after the gateway took the money), the
-- saga's compensation still finds a charge of unknown outcome and voids it at the gateway by its
-- idempotency key (VOIDED), instead of assuming nothing was taken.
alter table payments drop constraint payments_status_check;
alter table payments add constraint payments_status_check
  check (status in ('CHARGING', 'CAPTURED', 'DECLINED', 'REFUNDED', 'VOIDED'));
