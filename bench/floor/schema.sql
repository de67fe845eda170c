-- The database floor for a debit: the least PostgreSQL must do for one, in a single round trip.
-- A PL/pgSQL function does what a Tally debit does (lock the account row, sum what the active
-- lots hold, refuse a shortfall, append an entry, take from the lot expiring soonest first and
-- record each allocation), with no HTTP, no GraphQL and no ORM around it.
-- Run by floor.sh with `-v accounts=N`; it lives in its own schema, `floor`, rebuilt each run.
set client_min_messages = warning;
drop schema if exists floor cascade;
create schema floor;
set search_path = floor;

create table account (id bigint primary key, updated_at timestamptz not null default now());
create table lot (
  id bigserial primary key,
  account_id bigint not null references account(id),
  amount bigint not null,
  remaining bigint not null check (remaining >= 0),
  expires_at timestamptz,
  created_at timestamptz not null default now());
-- Only lots with something left matter to a debit, in the order it takes from them.
create index lot_burn on lot (account_id, expires_at nulls last, created_at, id) where remaining > 0;
create table entry (
  id bigserial primary key,
  account_id bigint not null,
  kind text not null,
  amount bigint not null,
  balance_after bigint not null,
  idempotency_key text unique,
  created_at timestamptz not null default now());
create table allocation (entry_id bigint not null, lot_id bigint not null, amount bigint not null);

-- Takes p_amount from the account, all or nothing; answers the balance left.
create function debit(p_account bigint, p_amount bigint, p_key text) returns bigint
language plpgsql set search_path = floor as $$
declare
  v_left bigint := p_amount;
  v_take bigint;
  v_balance bigint;
  v_entry bigint;
  v_lot record;
begin
  -- Concurrent debits of one account queue on its row, as Tally's do.
  perform 1 from account where id = p_account for update;
  select coalesce(sum(remaining), 0) into v_balance from lot
   where account_id = p_account and remaining > 0 and (expires_at is null or expires_at > now());
  if v_balance < p_amount then
    raise exception 'insufficient credits: % available, % requested', v_balance, p_amount;
  end if;
  insert into entry (account_id, kind, amount, balance_after, idempotency_key)
       values (p_account, 'debit', -p_amount, v_balance - p_amount, p_key)
    returning id into v_entry;
  for v_lot in select id, remaining from lot
                where account_id = p_account and remaining > 0
                  and (expires_at is null or expires_at > now())
                order by expires_at nulls last, created_at, id loop
    v_take := least(v_lot.remaining, v_left);
    update lot set remaining = remaining - v_take where id = v_lot.id;
    insert into allocation values (v_entry, v_lot.id, v_take);
    v_left := v_left - v_take;
    exit when v_left = 0;
  end loop;
  return v_balance - p_amount;
end $$;

-- Every account holds what a seeded Tally end user holds: a lot expiring in 7 days (older) and
-- one in 365 days, each far larger than a benchmark can spend.
insert into account (id) select n from generate_series(1, :accounts) n;
insert into lot (account_id, amount, remaining, expires_at)
  select n, 1000000000, 1000000000, now() + interval '7 days' from generate_series(1, :accounts) n;
insert into lot (account_id, amount, remaining, expires_at)
  select n, 1000000000, 1000000000, now() + interval '365 days' from generate_series(1, :accounts) n;
analyze;
