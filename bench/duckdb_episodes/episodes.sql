-- Episode rules (docs/episode-rules.md) for day-window DBC bundles, in plain DuckDB SQL.
--
-- Inputs prepared by __init__.py before this script runs:
--   s_dbc        claim_id, patient_id, provider_agb, specialism_cd, diagnosis_cd, product_cd,
--                start_date, end_date, amount_cents                        (all dbc lines)
--   s_act        claim_id, activity_cd, activity_date, quantity   (dbc_activity, relevant codes)
--   s_insured    patient_id, enrolled_from, enrolled_to, birth_year, sex, postcode3,
--                gemeente_code, death_date
--   v_gp, v_pharmacy, v_paramedical, v_maternity   (views over parquet)
--                claim_id, patient_id, service_date, amount_cents [, atc_cd for pharmacy]
--   b_params     bundle_id, pre_days, post_days, has_complication, has_cataract_outcomes
--   b_trigger    bundle_id, specialism_cd, diagnosis_cd, activity_cd
--   b_in_bundle  bundle_id, specialism_cd, diagnosis_cd
--   b_complication_dx  bundle_id, specialism_cd, diagnosis_cd
--   b_revision   bundle_id, activity_cd
--   b_secondary_dx     bundle_id, specialism_cd, diagnosis_cd
--   run_params   data_as_of, completeness_date
-- Outputs: tables episodes_out and episode_lines_out.
--
-- Money is integer cents throughout. A line with amount 0 is fully credited: it contributes
-- nothing (not a trigger, not allocated, not in any covariate or mean).

-- round_half_away_from_zero(a * din / d) in integer arithmetic (rule 4)
CREATE OR REPLACE TEMP MACRO prorate(a, din, d) AS
    CAST(sign(a) * ((2 * abs(CAST(a AS BIGINT)) * din + d) // (2 * d)) AS BIGINT);

-- 6. National mean declared amount per product and year of end_date (non-zero lines only).
CREATE OR REPLACE TEMP TABLE std_price AS
SELECT product_cd,
       year(end_date) AS end_year,
       prorate(sum(amount_cents), 1, count(*)) AS std_cents
FROM s_dbc
WHERE amount_cents <> 0
GROUP BY ALL;

-- 1. Trigger events: one per (claim, activity date) of a matching activity row.
CREATE OR REPLACE TEMP TABLE ev AS
SELECT bundle_id, patient_id, event_date, claim_id, provider_agb,
       row_number() OVER (PARTITION BY bundle_id, patient_id ORDER BY event_date, claim_id) AS rn
FROM (
    SELECT DISTINCT t.bundle_id, d.patient_id, a.activity_date AS event_date, d.claim_id,
           d.provider_agb
    FROM s_act a
    JOIN s_dbc d ON d.claim_id = a.claim_id
    JOIN b_trigger t
      ON t.specialism_cd = d.specialism_cd
     AND t.diagnosis_cd = d.diagnosis_cd
     AND t.activity_cd = a.activity_cd
    WHERE d.amount_cents <> 0
);

-- 2. One episode at a time: walk each patient's events in (date, claim_id) order. An event on or
-- before the open episode's window end joins it; a later one opens a new episode. The recursion
-- carries the open episode (number, anchor, window end) from event rn to event rn + 1.
CREATE OR REPLACE TEMP TABLE ev_ep AS
WITH RECURSIVE walk(bundle_id, patient_id, rn, episode_no, anchor_date, window_end) AS (
    SELECT e.bundle_id, e.patient_id, e.rn, 1, e.event_date,
           CAST(e.event_date + p.post_days AS DATE)
    FROM ev e
    JOIN b_params p ON p.bundle_id = e.bundle_id
    WHERE e.rn = 1
    UNION ALL
    SELECT e.bundle_id, e.patient_id, e.rn,
           w.episode_no + CASE WHEN e.event_date <= w.window_end THEN 0 ELSE 1 END,
           CASE WHEN e.event_date <= w.window_end THEN w.anchor_date ELSE e.event_date END,
           CASE WHEN e.event_date <= w.window_end THEN w.window_end
                ELSE CAST(e.event_date + p.post_days AS DATE) END
    FROM walk w
    JOIN ev e
      ON e.bundle_id = w.bundle_id AND e.patient_id = w.patient_id AND e.rn = w.rn + 1
    JOIN b_params p ON p.bundle_id = e.bundle_id
)
SELECT w.bundle_id, w.patient_id, w.rn, w.episode_no, w.anchor_date, w.window_end,
       e.claim_id, e.provider_agb
FROM walk w
JOIN ev e ON e.bundle_id = w.bundle_id AND e.patient_id = w.patient_id AND e.rn = w.rn;

-- 3. Episodes with their windows (no overlap within a bundle) and deterministic ids (rule 9).
CREATE OR REPLACE TEMP TABLE ep AS
WITH grouped AS (
    SELECT bundle_id, patient_id, episode_no,
           min(anchor_date) AS anchor_date,
           min(window_end) AS window_end,
           arg_min(claim_id, rn) AS anchor_claim_id,
           arg_min(provider_agb, rn) AS anchor_provider_agb,
           count(*) AS n_triggers
    FROM ev_ep
    GROUP BY ALL
)
SELECT substr(sha256(g.bundle_id || '|' || g.patient_id || '|'
                     || strftime(g.anchor_date, '%Y-%m-%d') || '|' || g.anchor_provider_agb),
              1, 20) AS episode_id,
       g.bundle_id, g.patient_id, g.anchor_date, g.anchor_provider_agb, g.anchor_claim_id,
       greatest(CAST(g.anchor_date - p.pre_days AS DATE),
                coalesce(CAST(lag(g.window_end) OVER (PARTITION BY g.bundle_id, g.patient_id
                                                       ORDER BY g.anchor_date) + 1 AS DATE),
                         CAST(g.anchor_date - p.pre_days AS DATE))) AS window_start,
       g.window_end,
       CAST(g.n_triggers AS INTEGER) AS n_triggers,
       p.has_complication, p.has_cataract_outcomes
FROM grouped g
JOIN b_params p ON p.bundle_id = g.bundle_id;

CREATE OR REPLACE TEMP TABLE ep_patients AS SELECT DISTINCT patient_id FROM ep;

-- Money lines of the patients with an episode (non-zero amounts), each parquet table read once.
-- Interval [line_start, line_end]; reference date = line_start.
CREATE OR REPLACE TEMP TABLE lines AS
SELECT 'dbc' AS source_table, d.claim_id, d.patient_id, d.start_date AS line_start,
       d.end_date AS line_end, d.amount_cents, sp.std_cents, d.specialism_cd, d.diagnosis_cd,
       CAST(NULL AS VARCHAR) AS atc_cd
FROM s_dbc d
JOIN std_price sp ON sp.product_cd = d.product_cd AND sp.end_year = year(d.end_date)
WHERE d.amount_cents <> 0 AND d.patient_id IN (SELECT patient_id FROM ep_patients)
UNION ALL
SELECT 'gp', claim_id, patient_id, service_date, service_date, amount_cents, amount_cents,
       NULL, NULL, NULL
FROM v_gp WHERE amount_cents <> 0 AND patient_id IN (SELECT patient_id FROM ep_patients)
UNION ALL
SELECT 'pharmacy', claim_id, patient_id, service_date, service_date, amount_cents, amount_cents,
       NULL, NULL, atc_cd
FROM v_pharmacy WHERE amount_cents <> 0 AND patient_id IN (SELECT patient_id FROM ep_patients)
UNION ALL
SELECT 'paramedical', claim_id, patient_id, service_date, service_date, amount_cents, amount_cents,
       NULL, NULL, NULL
FROM v_paramedical WHERE amount_cents <> 0 AND patient_id IN (SELECT patient_id FROM ep_patients)
UNION ALL
SELECT 'maternity', claim_id, patient_id, service_date, service_date, amount_cents, amount_cents,
       NULL, NULL, NULL
FROM v_maternity WHERE amount_cents <> 0 AND patient_id IN (SELECT patient_id FROM ep_patients);

-- 4. Allocation and proration: every line overlapping the window, exactly one component.
CREATE OR REPLACE TEMP TABLE el AS
WITH j AS (
    SELECT ep.episode_id, ep.bundle_id, l.source_table, l.claim_id,
           CASE WHEN l.source_table <> 'dbc' THEN l.source_table
                WHEN ib.bundle_id IS NOT NULL THEN 'in_bundle'
                ELSE 'msz_other' END AS component,
           CAST(least(l.line_end, ep.window_end) - greatest(l.line_start, ep.window_start) + 1
                AS INTEGER) AS days_in,
           CAST(l.line_end - l.line_start + 1 AS INTEGER) AS days,
           l.amount_cents, l.std_cents, l.line_start, l.specialism_cd, l.diagnosis_cd
    FROM ep
    JOIN lines l
      ON l.patient_id = ep.patient_id
     AND l.line_start <= ep.window_end
     AND l.line_end >= ep.window_start
    LEFT JOIN b_in_bundle ib
      ON ib.bundle_id = ep.bundle_id
     AND l.source_table = 'dbc'
     AND ib.specialism_cd = l.specialism_cd
     AND ib.diagnosis_cd = l.diagnosis_cd
)
SELECT *,
       prorate(amount_cents, days_in, days) AS allocated_cents,
       prorate(std_cents, days_in, days) AS allocated_standardised_cents
FROM j;

-- 8. Case-mix covariates over [anchor - 365, anchor - 1].
CREATE OR REPLACE TEMP TABLE cov_cost AS
SELECT ep.episode_id,
       CAST(sum(prorate(l.std_cents,
                        least(l.line_end, CAST(ep.anchor_date - 1 AS DATE))
                          - greatest(l.line_start, CAST(ep.anchor_date - 365 AS DATE)) + 1,
                        l.line_end - l.line_start + 1)) AS BIGINT) AS prior_cents
FROM ep
JOIN lines l
  ON l.patient_id = ep.patient_id
 AND l.line_start <= CAST(ep.anchor_date - 1 AS DATE)
 AND l.line_end >= CAST(ep.anchor_date - 365 AS DATE)
GROUP BY ep.episode_id;

CREATE OR REPLACE TEMP TABLE cov_chronic AS
SELECT ep.episode_id,
       bool_or(starts_with(l.atc_cd, 'A10')) AS diabetes,
       bool_or(starts_with(l.atc_cd, 'R03')) AS obstructive_airway,
       bool_or(starts_with(l.atc_cd, 'C01') OR starts_with(l.atc_cd, 'C03')
               OR starts_with(l.atc_cd, 'C07') OR starts_with(l.atc_cd, 'C08')
               OR starts_with(l.atc_cd, 'C09')) AS cardiovascular,
       bool_or(starts_with(l.atc_cd, 'C10')) AS lipid,
       bool_or(starts_with(l.atc_cd, 'B01A')) AS anticoagulants,
       bool_or(starts_with(l.atc_cd, 'N06A')) AS depression,
       bool_or(starts_with(l.atc_cd, 'N05A')) AS psychosis,
       bool_or(starts_with(l.atc_cd, 'N03')) AS epilepsy,
       bool_or(starts_with(l.atc_cd, 'H03')) AS thyroid,
       bool_or(starts_with(l.atc_cd, 'L01') OR starts_with(l.atc_cd, 'L02')) AS cancer
FROM ep
JOIN lines l
  ON l.patient_id = ep.patient_id
 AND l.source_table = 'pharmacy'
 AND l.line_start BETWEEN CAST(ep.anchor_date - 365 AS DATE) AND CAST(ep.anchor_date - 1 AS DATE)
GROUP BY ep.episode_id;

-- Residence, age and sex: the spell covering the anchor, else the latest spell started before it.
CREATE OR REPLACE TEMP TABLE cov_spell AS
SELECT ep.episode_id, i.birth_year, i.sex, i.postcode3, i.gemeente_code
FROM ep
JOIN s_insured i ON i.patient_id = ep.patient_id AND i.enrolled_from <= ep.anchor_date
QUALIFY row_number() OVER (
    PARTITION BY ep.episode_id
    ORDER BY (i.enrolled_to IS NULL OR i.enrolled_to >= ep.anchor_date) DESC,
             i.enrolled_from DESC) = 1;

-- 7. Status inputs: death date per patient; continuous enrolment coverage (merged spells).
CREATE OR REPLACE TEMP TABLE pat_death AS
SELECT patient_id, max(death_date) AS death_date
FROM s_insured
WHERE patient_id IN (SELECT patient_id FROM ep_patients)
GROUP BY patient_id;

CREATE OR REPLACE TEMP TABLE coverage AS
WITH s AS (
    SELECT patient_id, enrolled_from, coalesce(enrolled_to, DATE '9999-12-31') AS enrolled_to
    FROM s_insured
    WHERE patient_id IN (SELECT patient_id FROM ep_patients)
), g AS (
    SELECT *,
           max(enrolled_to) OVER (PARTITION BY patient_id ORDER BY enrolled_from, enrolled_to
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_to
    FROM s
), h AS (
    SELECT *,
           sum(CASE WHEN prev_to IS NULL OR enrolled_from > prev_to + 1 THEN 1 ELSE 0 END)
               OVER (PARTITION BY patient_id ORDER BY enrolled_from, enrolled_to
                     ROWS UNBOUNDED PRECEDING) AS island
    FROM g
)
SELECT patient_id, island, min(enrolled_from) AS cover_from, max(enrolled_to) AS cover_to
FROM h
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE ep_enrolled AS
SELECT DISTINCT ep.episode_id
FROM ep
JOIN coverage c
  ON c.patient_id = ep.patient_id
 AND c.cover_from <= ep.window_start
 AND c.cover_to >= ep.window_end;

-- Outcomes.
CREATE OR REPLACE TEMP TABLE out_visits AS
SELECT el.episode_id, CAST(sum(a.quantity) AS INTEGER) AS outpatient_visits
FROM el
JOIN ep ON ep.episode_id = el.episode_id
JOIN s_act a ON a.claim_id = el.claim_id
WHERE el.component = 'in_bundle'
  AND a.activity_cd IN ('190060', '190013')
  AND a.activity_date BETWEEN ep.window_start AND ep.window_end
GROUP BY el.episode_id;

CREATE OR REPLACE TEMP TABLE out_los AS
SELECT ep.episode_id, CAST(sum(a.quantity) AS INTEGER) AS length_of_stay
FROM ep
JOIN s_act a ON a.claim_id = ep.anchor_claim_id
WHERE a.activity_cd IN ('190218', '194804')
GROUP BY ep.episode_id;

CREATE OR REPLACE TEMP TABLE out_complication AS
SELECT DISTINCT el.episode_id
FROM el
JOIN ep ON ep.episode_id = el.episode_id
JOIN b_complication_dx c
  ON c.bundle_id = el.bundle_id
 AND c.specialism_cd = el.specialism_cd
 AND c.diagnosis_cd = el.diagnosis_cd
WHERE el.component = 'in_bundle'
  AND el.line_start > ep.anchor_date
  AND el.line_start <= CAST(ep.anchor_date + 365 AS DATE)
UNION
SELECT DISTINCT el.episode_id
FROM el
JOIN ep ON ep.episode_id = el.episode_id
JOIN s_act a ON a.claim_id = el.claim_id
JOIN b_revision r ON r.bundle_id = el.bundle_id AND r.activity_cd = a.activity_cd
WHERE el.component = 'in_bundle'
  AND a.activity_date > ep.anchor_date
  AND a.activity_date <= CAST(ep.anchor_date + 365 AS DATE);

CREATE OR REPLACE TEMP TABLE out_secondary AS
SELECT DISTINCT el.episode_id
FROM el
JOIN ep ON ep.episode_id = el.episode_id
JOIN b_secondary_dx s
  ON s.bundle_id = el.bundle_id
 AND s.specialism_cd = el.specialism_cd
 AND s.diagnosis_cd = el.diagnosis_cd
WHERE el.component = 'in_bundle'
  AND el.line_start > ep.anchor_date;

-- Result tables.
CREATE OR REPLACE TEMP TABLE episodes_out AS
WITH base AS (
    SELECT ep.*,
           coalesce(ch.diabetes, false) AS diabetes,
           coalesce(ch.obstructive_airway, false) AS obstructive_airway,
           coalesce(ch.cardiovascular, false) AS cardiovascular,
           coalesce(ch.lipid, false) AS lipid,
           coalesce(ch.anticoagulants, false) AS anticoagulants,
           coalesce(ch.depression, false) AS depression,
           coalesce(ch.psychosis, false) AS psychosis,
           coalesce(ch.epilepsy, false) AS epilepsy,
           coalesce(ch.thyroid, false) AS thyroid,
           coalesce(ch.cancer, false) AS cancer,
           sp.birth_year, sp.sex, sp.postcode3, sp.gemeente_code,
           pd.death_date,
           en.episode_id IS NOT NULL AS enrolled,
           coalesce(cc.prior_cents, 0) AS prior_cents,
           coalesce(ov.outpatient_visits, 0) AS outpatient_visits,
           coalesce(ls.length_of_stay, 0) AS length_of_stay,
           oc.episode_id IS NOT NULL AS any_complication,
           os.episode_id IS NOT NULL AS any_secondary
    FROM ep
    LEFT JOIN cov_chronic ch ON ch.episode_id = ep.episode_id
    LEFT JOIN cov_spell sp ON sp.episode_id = ep.episode_id
    LEFT JOIN pat_death pd ON pd.patient_id = ep.patient_id
    LEFT JOIN ep_enrolled en ON en.episode_id = ep.episode_id
    LEFT JOIN cov_cost cc ON cc.episode_id = ep.episode_id
    LEFT JOIN out_visits ov ON ov.episode_id = ep.episode_id
    LEFT JOIN out_los ls ON ls.episode_id = ep.episode_id
    LEFT JOIN out_complication oc ON oc.episode_id = ep.episode_id
    LEFT JOIN out_secondary os ON os.episode_id = ep.episode_id
)
SELECT episode_id,
       bundle_id,
       patient_id,
       anchor_date,
       CAST(year(anchor_date) AS INTEGER) AS anchor_year,
       anchor_provider_agb,
       window_start,
       window_end,
       n_triggers,
       CASE WHEN death_date BETWEEN window_start AND window_end THEN 'death'
            WHEN NOT enrolled THEN 'censored_enrolment'
            WHEN window_end > (SELECT completeness_date FROM run_params) THEN 'censored_data'
            ELSE 'complete' END AS status,
       CAST(year(anchor_date) - birth_year AS INTEGER) AS age_at_anchor,
       sex,
       diabetes, obstructive_airway, cardiovascular, lipid, anticoagulants,
       depression, psychosis, epilepsy, thyroid, cancer,
       CAST(diabetes::INTEGER + obstructive_airway::INTEGER + cardiovascular::INTEGER
            + lipid::INTEGER + anticoagulants::INTEGER + depression::INTEGER
            + psychosis::INTEGER + epilepsy::INTEGER + thyroid::INTEGER + cancer::INTEGER
            AS INTEGER) AS n_chronic_conditions,
       CAST(prior_cents AS BIGINT) AS prior_year_standardised_cents,
       postcode3,
       gemeente_code,
       outpatient_visits,
       length_of_stay,
       CASE WHEN has_complication THEN any_complication END AS complication,
       CASE WHEN has_cataract_outcomes THEN any_secondary END AS secondary_cataract,
       CASE WHEN has_cataract_outcomes THEN n_triggers >= 2 END AS second_eye
FROM base;

CREATE OR REPLACE TEMP TABLE episode_lines_out AS
SELECT episode_id, bundle_id, source_table, claim_id, component, days_in, days,
       allocated_cents, allocated_standardised_cents
FROM el;
