-- Champion (prod) against challenger (the var mortgage_challenger, e.g. mortgage_deny@candidate) on every
-- application: label agreement, mean |delta score|, rank correlation, PSI of the two score distributions,
-- and each version's AUC, log-loss and Brier on the applications whose decision has arrived.
-- Built only when the var is set: dbt build --vars '{mortgage_challenger: mortgage_deny@candidate}'
{{ config(enabled=var('mortgage_challenger', '') != '') }}
{{ scorehouse.compare_models(ref('features_mortgage'), 'mortgage_deny', var('mortgage_challenger', ''),
                             'application_id', outcomes=ref('outcomes_mortgage'), outcome='denied',
                             threshold=var('mortgage_deny_threshold')) }}
