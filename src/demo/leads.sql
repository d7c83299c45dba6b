-- Demo generator, step "leads": the cabinet export of this batch in one statement,
-- rendered from demo_plan with the variations real exports have (phone and plate
-- formats, name case, accents, typos, order, hyphens, particles, office phone, missing
-- keys) and the hostile rows of SPEC 11. Re-exported rows (HOSTILE_DUP_EXTERNAL_ID) are
-- turned into copies of the previous lead by the next step (leads_dup.sql).
INSERT INTO public.module_ct_cabinet_leads (
  id, external_id, activation_city, active_1, active_5, active_10, active_15, active_25, active_50, active_100,
  asset_color, asset_model, asset_plate_number, first_name, last_active_date, last_name, lead_created_at,
  middle_name, park_name, park_phone, status, tariff, target_city, created_at)
SELECT pl.lead_id,
       CASE WHEN demo.u(h.hl, 1) < 0.01 THEN NULL
            WHEN demo.u(h.hl, 1) < 0.02 THEN ''
            -- Padded ids: lead_source_pk trims them.
            WHEN demo.u(h.hl, 1) < 0.03 THEN '  ' || md5(p.pfx || ':external:' || pl.i) || ' '
            ELSE md5(p.pfx || ':external:' || pl.i) END,
       m.city,
       m.level >= 1, m.level >= 2, m.level >= 3, m.level >= 3, m.level >= 3, false, false,
       pl.color,
       CASE WHEN pl.scenario = 'HOSTILE_LONG_STRINGS' THEN repeat('Toyota Yaris ', 800) ELSE replace(pl.car, '|', ' ') END,
       v.plate,
       v.fn,
       CASE WHEN m.level >= 1 THEN least(p.today, pl.hire_date + pl.churn_days) END,
       v.ln,
       CASE WHEN pl.scenario <> 'HOSTILE_NULL_LEAD_DATE' THEN pl.lead_ts END,
       v.mn,
       'Yego Taxi Lima',
       v.phone,
       CASE WHEN pl.true_driver_id IS NOT NULL THEN 'active'
            ELSE (ARRAY['new', 'new', 'pending', 'rejected'])[1 + demo.ri(h.hn, 4, 4)] END,
       (ARRAY['Economy', 'Economy', 'Comfort', 'Start'])[1 + demo.ri(h.ho, 4, 4)],
       m.city,
       -- The row reaches the table about two days after the lead, never after today.
       greatest(pl.lead_ts, least(pl.lead_ts + interval '36 hours' + floor(demo.u(h.hm, 4) * 86400) * interval '1 second',
                                  p.today::timestamp))
FROM demo_plan pl
CROSS JOIN demo_params p
CROSS JOIN LATERAL (
  SELECT md5(p.pfx || ':render-lead:' || pl.i) AS hl,
         md5(p.pfx || ':render-lead:' || pl.i || ':b') AS hm,
         md5(p.pfx || ':render-lead:' || pl.i || ':c') AS hn,
         md5(p.pfx || ':render-lead:' || pl.i || ':d') AS ho
  -- OFFSET 0: a fence, so each md5 is computed once per row, not once per reference.
  OFFSET 0
) h
CROSS JOIN LATERAL (
  SELECT CASE WHEN demo.u(h.hn, 4) < 0.9 THEN 'Lima' ELSE 'Callao' END AS city,
         -- Upstream activity flags (not used by the product): 1 = active_1, 2 = up to
         -- active_5, 3 = up to active_25.
         CASE WHEN pl.true_driver_id IS NULL THEN 0
              ELSE CASE pl.activity WHEN 'low' THEN 1 WHEN 'mid' THEN 2 WHEN 'high' THEN 3 ELSE 0 END END AS level
) m
-- The name as the person typed it in the cabinet. The OFFSET 0 fences keep the parts
-- plain columns, so demo.lead_case is inlined instead of called per row.
CROSS JOIN LATERAL (
  SELECT CASE WHEN pl.scenario = 'PLATE_NAME_TYPO' THEN demo.typo(pl.sur1, h.hm) ELSE pl.sur1 END AS s1,
         CASE WHEN pl.scenario IN ('PLATE_NAME_NO_MIDDLE', 'PLATE_NICKNAME') THEN NULL ELSE pl.middle_name END AS mid
  OFFSET 0
) t
CROSS JOIN LATERAL (
  SELECT concat_ws(CASE WHEN pl.scenario = 'PLATE_HYPHEN_SURNAME' THEN '-' ELSE ' ' END, t.s1,
                   CASE WHEN pl.scenario <> 'PLATE_NICKNAME' THEN pl.sur2 END) AS surnames,
         concat_ws(' ', pl.first_name, t.mid) AS given
  OFFSET 0
) s
CROSS JOIN LATERAL (
  SELECT demo.ri(h.hl, 2, 10) AS cv, demo.u(h.hl, 3) < 0.25 AS strip,
         pl.scenario = 'PLATE_NAME_ORDER' AS swapped
  OFFSET 0
) c
CROSS JOIN LATERAL (
  SELECT demo.lead_case(CASE WHEN c.swapped THEN s.surnames
                             WHEN pl.scenario = 'PLATE_NICKNAME' THEN demo.nickname(pl.first_name)
                             ELSE pl.first_name END, c.cv, c.strip) AS fn,
         demo.lead_case(CASE WHEN c.swapped THEN NULL ELSE t.mid END, c.cv, c.strip) AS mn,
         demo.lead_case(CASE WHEN c.swapped THEN s.given ELSE s.surnames END, c.cv, c.strip) AS ln
) nm
-- Which keys the lead carries.
CROSS JOIN LATERAL (
  SELECT CASE WHEN pl.scenario IN ('PHONE_FORMAT', 'TWO_PARKS_SAME_PHONE', 'HOSTILE_NULL_LEAD_DATE', 'DRIVER_REGISTERED_TWICE') THEN 'person'
              WHEN pl.scenario = 'PHONE_OF_RELATIVE' THEN 'relative'
              WHEN pl.scenario = 'OTHER_PARK_ONLY' AND demo.u(h.hn, 2) < 0.5 THEN 'person'
              WHEN pl.scenario = 'NO_DRIVER' AND demo.u(h.hn, 1) < 0.6 THEN 'person'
              WHEN pl.scenario IN ('OFFICE_PHONE_ONLY', 'OFFICE_PHONE_WITH_PLATE') THEN 'office' END AS phone_kind,
         CASE WHEN pl.scenario IN ('PLATE_NAME', 'PLATE_NAME_TYPO', 'PLATE_NAME_ORDER', 'PLATE_NAME_NO_MIDDLE',
                                   'PLATE_HYPHEN_SURNAME', 'PLATE_PARTICLE_SURNAME', 'SHIFT_SHARED_PLATE',
                                   'OFFICE_PHONE_WITH_PLATE', 'OTHER_PARK_ONLY', 'HOSTILE_NULL_LEAD_DATE',
                                   'PHONE_OF_RELATIVE', 'PLATE_NICKNAME') THEN true
              WHEN pl.scenario IN ('PHONE_FORMAT', 'TWO_PARKS_SAME_PHONE') THEN demo.u(h.hn, 2) < 0.5
              WHEN pl.scenario = 'NO_DRIVER' THEN demo.u(h.hn, 2) < 0.7 OR demo.u(h.hn, 1) >= 0.6
              ELSE false END AS has_plate,
         -- A missing key is NULL in most exports and an empty string in some.
         CASE WHEN demo.u(h.hn, 3) < 0.1 THEN '' END AS missing
) k
CROSS JOIN LATERAL (
  SELECT CASE k.phone_kind
           WHEN 'person' THEN demo.lead_phone(pl.phone9, demo.ri(h.hl, 4, 5))
           -- A relative's phone: the second driver's (demo_plan.second_id)
           WHEN 'relative' THEN demo.lead_phone(demo.phone9(pl.second_id, p.phone_mult, p.phone_shift), demo.ri(h.hl, 4, 5))
           -- Five park offices; office 1 is also the phone of the park manager's driver row.
           WHEN 'office' THEN demo.lead_phone(demo.phone9(99999991 + demo.ri(h.ho, 1, 5), p.phone_mult, p.phone_shift), demo.ri(h.hl, 4, 5))
           ELSE k.missing END AS phone,
         CASE WHEN k.has_plate THEN demo.lead_plate(pl.plate, demo.ri(h.hm, 3, 5)) ELSE k.missing END AS plate
) kv
-- Hostile rows (SPEC 11) replace names and keys.
CROSS JOIN LATERAL (
  SELECT CASE pl.scenario
           WHEN 'HOSTILE_EMOJI_NAME' THEN '🚖🚖🚖'
           WHEN 'HOSTILE_CYRILLIC_NAME' THEN demo.pick(ARRAY['Иван', 'Сергей', 'Ольга', 'Дмитрий', 'Наталья'], h.ho, 2)
           WHEN 'HOSTILE_LONG_STRINGS' THEN repeat('José ', 2048)
           WHEN 'HOSTILE_SQL_TEXT' THEN $q$'; DROP TABLE drivers; --$q$
           ELSE nm.fn END AS fn,
         CASE pl.scenario
           WHEN 'HOSTILE_EMOJI_NAME' THEN '🙂'
           WHEN 'HOSTILE_CYRILLIC_NAME' THEN NULL
           WHEN 'HOSTILE_LONG_STRINGS' THEN repeat('x', 10240)
           WHEN 'HOSTILE_SQL_TEXT' THEN $q$' OR '1'='1$q$
           ELSE nm.mn END AS mn,
         CASE pl.scenario
           WHEN 'HOSTILE_EMOJI_NAME' THEN '😀 ' || pl.sur1 || ' 👍'
           WHEN 'HOSTILE_CYRILLIC_NAME' THEN demo.pick(ARRAY['Петров', 'Иванова', 'Смирнов', 'Кузнецов', 'Попова'], h.ho, 3)
           WHEN 'HOSTILE_LONG_STRINGS' THEN repeat('Ñ', 10240)
           WHEN 'HOSTILE_SQL_TEXT' THEN $q$Robert'); DELETE FROM canon.identity_links; --$q$
           ELSE nm.ln END AS ln,
         CASE pl.scenario
           WHEN 'HOSTILE_EMOJI_NAME' THEN '📞 9️⃣7️⃣7️⃣'
           WHEN 'HOSTILE_CYRILLIC_NAME' THEN NULL
           WHEN 'HOSTILE_LONG_STRINGS' THEN repeat('9', 10240)
           WHEN 'HOSTILE_SQL_TEXT' THEN $q$1' OR '1'='1$q$
           WHEN 'HOSTILE_GARBAGE_KEYS'
             THEN demo.pick(ARRAY['000000000', 'n/a', '+51', '123', '999999999', 'sin teléfono', '51', '0'], h.ho, 2)
           ELSE kv.phone END AS phone,
         CASE pl.scenario
           WHEN 'HOSTILE_EMOJI_NAME' THEN NULL
           -- Cyrillic look-alike letters: А, В and С are not Latin.
           WHEN 'HOSTILE_CYRILLIC_NAME' THEN 'А123ВС'
           WHEN 'HOSTILE_LONG_STRINGS' THEN repeat('AB-1', 2560)
           WHEN 'HOSTILE_SQL_TEXT' THEN $q$'; --$q$
           WHEN 'HOSTILE_GARBAGE_KEYS' THEN demo.pick(ARRAY['---', 'S/P', '???', 'N/A', '0', '-', 'sin placa'], h.ho, 3)
           ELSE kv.plate END AS plate
) v
WHERE pl.scenario <> 'HOSTILE_ALL_NULL'
UNION ALL
-- Every column NULL but id (created_at too: the export may send it explicitly empty).
SELECT pl.lead_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM demo_plan pl
WHERE pl.scenario = 'HOSTILE_ALL_NULL';
