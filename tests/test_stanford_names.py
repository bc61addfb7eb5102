"""The Stanford Cars class-name grammar, on the spec's traps and on all 196 real names."""
import collections

import pytest

from common.errors import UserError
from data_prep.datasets.stanford_cars.devkit import official_class_names
from data_prep.datasets.stanford_cars.names import folder_key, parse_class_name


@pytest.mark.parametrize("name, make, model, body, year", [
    ("AM General Hummer SUV 2000", "AM General", "Hummer", "SUV", "2000"),
    ("Aston Martin V8 Vantage Convertible 2012", "Aston Martin", "V8 Vantage", "Convertible", "2012"),
    ("Land Rover LR2 SUV 2012", "Land Rover", "LR2", "SUV", "2012"),
    ("Ram C/V Cargo Van Minivan 2012", "Ram", "C/V Cargo Van", "Minivan", "2012"),
    ("Chevrolet Express Cargo Van 2007", "Chevrolet", "Express", "Cargo Van", "2007"),
    ("Chevrolet Express Van 2007", "Chevrolet", "Express", "Van", "2007"),
    ("Ford E-Series Wagon Van 2012", "Ford", "E-Series", "Wagon Van", "2012"),
    ("Ford Ranger SuperCab 2011", "Ford", "Ranger", "SuperCab", "2011"),
    ("Dodge Ram Pickup 3500 Crew Cab 2010", "Dodge", "Ram Pickup 3500", "Crew Cab", "2010"),
    ("Infiniti G Coupe IPL 2012", "Infiniti", "G Coupe IPL", None, "2012"),
    ("Chevrolet Corvette Ron Fellows Edition Z06 2007", "Chevrolet", "Corvette Ron Fellows Edition Z06", None, "2007"),
    ("Bentley Continental Supersports Conv. Convertible 2012", "Bentley", "Continental Supersports Conv.", "Convertible", "2012"),
    ("Rolls-Royce Phantom Drophead Coupe Convertible 2012", "Rolls-Royce", "Phantom Drophead Coupe", "Convertible", "2012"),
    ("Chrysler Town and Country Minivan 2012", "Chrysler", "Town and Country", "Minivan", "2012"),
    ("smart fortwo Convertible 2012", "smart", "fortwo", "Convertible", "2012"),
])
def test_grammar_traps(name, make, model, body, year):
    parsed = parse_class_name(name)
    assert (parsed.make, parsed.model, parsed.type, parsed.year) == (make, model, body, year)


@pytest.mark.parametrize("bad", ["Audi A4", "2012", "Audi 2012", "Audi A4 Sedan twenty"])
def test_names_outside_the_grammar_are_clear_errors(bad):
    with pytest.raises(UserError, match="Year|model"):
        parse_class_name(bad)


def test_all_official_names_split_as_the_spec_counts():
    parsed = [parse_class_name(name) for name in official_class_names()]
    makes = {car.make for car in parsed}
    assert len(parsed) == 196 and len(makes) == 49
    assert {"AM General", "Aston Martin", "Land Rover", "HUMMER", "smart", "Ram"} <= makes
    types = collections.Counter(car.type for car in parsed)
    assert types["Sedan"] == 46 and types["SUV"] == 34 and types["Convertible"] == 26
    assert types["Coupe"] == 25 and types["Crew Cab"] == 8 and types[None] == 15
    assert collections.Counter(car.year for car in parsed)["2012"] == 117


def test_shipped_names_equal_the_real_devkit(realdata):
    from data_prep.matfile import cell_strings, load_mat

    path = str(realdata / "devkit" / "cars_meta.mat")
    assert cell_strings(load_mat(path), "class_names", path) == official_class_names()


@pytest.mark.parametrize("folder", ["Ram C-V Cargo Van Minivan 2012", "Ram CV Cargo Van Minivan 2012",
                                    "Ram C_V Cargo Van Minivan 2012", "ram c/v cargo van minivan 2012"])
def test_folder_spellings_of_the_slash_class_match(folder):
    assert folder_key(folder) == folder_key("Ram C/V Cargo Van Minivan 2012")
