El sol sale.
La luna se pone.
